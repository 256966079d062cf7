/** Guest OS adapters behind one interface (docs/windows-guest.md). The linux-ref adapter is exported from `./linux-ref.ts` once it exists. */
export {
  assertSupported,
  checkPlan,
  CommandRecorder,
  GUEST_OPERATIONS,
  GuestError,
  MAX_PLAN_WRITES,
  planWrites,
  sshConnector,
  type FioJob,
  type GuestAdapter,
  type GuestCallOptions,
  type GuestCommandRecord,
  type GuestConnector,
  type GuestDisk,
  type GuestErrorKind,
  type GuestOperation,
  type GuestPhase,
  type GuestShell,
  type PlanWritesOptions,
  type PowerButtonInfo,
  type WritePlan,
} from './adapter.ts';
export { MAX_COMMAND_LINE, PowerShellQuoteError, psCommandLine, psDecode, psEncode, psQuote, psScriptOf, readableStderr, winArg, winCommandLine } from './powershell.ts';
export { fillTemplate, splitCommandTemplate, WindowsAdapter, type WindowsAdapterOptions } from './windows.ts';
export {
  buildPaths,
  driverPathsFragment,
  firstLogonCommand,
  installArgv,
  renderAutounattend,
  renderTemplate,
  resolveImageOptions,
  setupConfig,
  swtpmArgv,
  WindowsImageError,
  xmlEscape,
  type ResolvedWindowsImageOptions,
  type SetupConfig,
  type Win11Checks,
  type WindowsImageManifest,
  type WindowsImageOptions,
} from './windows-image.ts';
export { buildWindowsImage, packAnswerMedia, parseComLine, RECIPE_DIR, stageAnswerFiles, type BuildOptions } from './windows-image-build.ts';
// The reference guest's image and VM spec (owned with images/linux-ref/); its adapter will be `./linux-ref.ts`.
export * from './linux-ref-image.ts';
export { LinuxRefAdapter, type LinuxRefAdapterOptions } from './linux-ref.ts';
export { linuxRefSetupText, type LinuxRefSetup } from './linux-ref-setup.ts';
export { filePlanText, MAX_FILE_OPS, planFiles, type FileOpKind, type FilePlanOp, type FilePlanOptions } from './files-plan.ts';
