export { SshClient, type HostKeyPolicy, type SshTarget, type SshConnectOptions, type ExecOptions, type ExecResult, type UploadOptions } from './client.ts';
export { SshError, SshKeyError, type SshErrorKind } from './errors.ts';
export { fingerprintOf, generateKeyPair, normalizeFingerprint, publicKeyBlob } from './keys.ts';
