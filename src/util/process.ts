/** Whether a process exists (signal 0; a zombie still counts). Any error, EPERM included, is "no". */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
