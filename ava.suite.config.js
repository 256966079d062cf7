// The slow end-to-end suite (npm run test:suite): whole scenario runs under TCG, one file at a time.
export default {
  files: ['test/suite/**/*.test.ts'],
  extensions: { ts: 'module' },
  timeout: '40m',
  concurrency: 1,
  workerThreads: false,
};
