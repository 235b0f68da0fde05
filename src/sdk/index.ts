/**
 * Public entry of the TypeScript SDK: `import { RosetClient } from 'roset/sdk'`-style
 * consumers and the CLI import from here only.
 */
export { RosetClient, SDK_VERSION } from './client.js';
export type {
  RosetClientOptions,
  ListOptions,
  ListCommitsOptions,
  WaitOptions,
  WaitForCommitOptions,
  WaitForGroupOptions,
} from './client.js';
export {
  resolveConfig,
  defaultStateDir,
  normalizeApiUrl,
  DEFAULT_API_URL,
  ENDPOINT_FILE,
  API_KEY_FILE,
} from './config.js';
export type { ConfigOptions, ResolvedConfig, ConfigSource } from './config.js';
export { fetchTrusting, tlsFailure } from './tls.js';
export {
  SdkError,
  SdkApiError,
  SdkNotFoundError,
  SdkConflictError,
  SdkNetworkError,
  SdkTlsError,
  SdkTimeoutError,
  SdkCommitFailedError,
  SdkGroupFailedError,
} from './errors.js';
export type * from '../api/types.js';
