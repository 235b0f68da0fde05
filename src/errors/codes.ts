/**
 * The one table of Roset error codes.
 *
 * Owns: every stable error code, its HTTP status and its errno. Nothing else in the
 * code base may map a code to a status or an errno; the API (errors → HTTP) and the
 * FUSE adapter (errors → errno) both read this table.
 *
 * Invariant: codes are never renamed or reused; clients match on them. The wire code is
 * the bare name (`SEALED`); JavaScript error objects carry it as `ROSET_E_SEALED`.
 */
export type Errno =
  | 'EACCES' | 'EPERM' | 'EINVAL' | 'ENOENT' | 'EEXIST' | 'ENOTDIR' | 'EISDIR'
  | 'ENOTEMPTY' | 'EROFS' | 'EIO' | 'ENOSPC' | 'ENAMETOOLONG' | 'EBUSY' | 'EAGAIN'
  | 'ENOTSUP' | 'EXDEV' | 'ETIMEDOUT' | 'EBADF' | 'EFBIG' | 'EREMOTE';

interface CodeInfo {
  readonly status: number;
  readonly errno: Errno;
  readonly description: string;
}

function def(status: number, errno: Errno, description: string): CodeInfo {
  return { status, errno, description };
}

export const ERROR_CODES = {
  // Request and authentication
  UNAUTHORIZED: def(401, 'EACCES', 'Missing, invalid or revoked API key'),
  BAD_REQUEST: def(400, 'EINVAL', 'The request is malformed or a field is invalid'),
  INVALID_JSON: def(400, 'EINVAL', 'The request body is not valid JSON'),
  INVALID_PATH: def(400, 'EINVAL', 'The path is not absolute, contains "..", "." or NUL, or is otherwise invalid'),
  NAME_TOO_LONG: def(400, 'ENAMETOOLONG', 'A path component is longer than 255 bytes'),
  PAYLOAD_TOO_LARGE: def(413, 'EINVAL', 'The request body is too large'),
  ROUTE_NOT_FOUND: def(404, 'ENOENT', 'No such route'),
  METHOD_NOT_ALLOWED: def(405, 'EINVAL', 'The route does not accept this method'),
  // API keys
  KEY_NOT_FOUND: def(404, 'ENOENT', 'No such API key'),
  INVALID_KEY_NAME: def(400, 'EINVAL', 'Key names are 1-128 characters, none of them a control character'),
  // Namespace
  MOUNT_NOT_FOUND: def(404, 'ENOENT', 'No such mount'),
  NODE_NOT_FOUND: def(404, 'ENOENT', 'No such file or folder'),
  NODE_EXISTS: def(409, 'EEXIST', 'A file or folder with this name already exists'),
  CONFLICT: def(409, 'EEXIST', 'Another writer owns this file: it was created from another node'),
  NOT_A_FOLDER: def(409, 'ENOTDIR', 'The node is not a folder'),
  IS_A_FOLDER: def(409, 'EISDIR', 'The node is a folder'),
  FOLDER_NOT_EMPTY: def(409, 'ENOTEMPTY', 'The folder is not empty'),
  CROSS_DEVICE: def(409, 'EXDEV', 'The operation would cross a commit boundary'),
  INVALID_MOVE: def(400, 'EINVAL', 'A folder cannot be moved into itself or below itself'),
  UNSUPPORTED_FLAG: def(400, 'EINVAL', 'The operation was asked for with a flag Roset does not support'),
  CONTAINS_COMMITS: def(409, 'EBUSY', 'The folder holds sealing or committed folders, whose place is fixed by their commits'),
  REFERENCED_BY_REF: def(409, 'EBUSY', 'A ref points at the commit of this folder, or of a folder inside it: move or delete the ref first'),
  FILE_CREATE_NOT_SUPPORTED: def(400, 'EINVAL', 'Files are created by writing them through a mount, not through the API'),
  FILE_TOO_LARGE: def(413, 'EFBIG', 'The file would exceed the maximum file size'),
  // Write barrier and immutability
  SEALED: def(409, 'EROFS', 'The folder is sealing for a commit: writes are refused'),
  COMMITTED: def(409, 'EROFS', 'The folder is committed and immutable'),
  READ_ONLY_MOUNT: def(409, 'EROFS', 'The mount is read-only'),
  NOT_OPEN_FOR_WRITING: def(409, 'EBADF', 'The file handle is not open for writing'),
  // Commits
  COMMIT_NOT_FOUND: def(404, 'ENOENT', 'No such commit'),
  COMMIT_IN_PROGRESS: def(409, 'EBUSY', 'A commit of this folder, or of a folder around or inside it, is in progress'),
  COMMIT_NOT_COMPLETED: def(409, 'EINVAL', 'The commit is not completed'),
  COMMIT_PURGED: def(404, 'ENOENT', 'The commit was purged by garbage collection'),
  GC_RUNNING: def(409, 'EBUSY', 'Another garbage collection is running'),
  OPEN_HANDLES: def(409, 'EBUSY', 'Files were still open for writing when the seal timed out'),
  INTERRUPTED: def(503, 'EIO', 'The commit was interrupted by a daemon restart'),
  AGENT_UNAVAILABLE: def(503, 'EIO', 'No data-plane agent holds the staged files for this folder'),
  METADATA_UNAVAILABLE: def(503, 'EIO', 'The metadata database is unreachable (restarting, or the network is down): retry once it is back'),
  METADATA_CONTENDED: def(503, 'EAGAIN', 'The metadata database kept aborting the change for concurrent ones (deadlocks): nothing changed; retry'),
  CONTROL_PLANE_UNREACHABLE: def(503, 'EIO', 'The control plane could not be reached from this node (it is restarting, or the network is down)'),
  AGENT_NOT_FOUND: def(404, 'ENOENT', 'No such agent is registered: register it again'),
  TASK_NOT_FOUND: def(404, 'ENOENT', 'No such agent task (answered already, or its commit is gone)'),
  STAGED_ON_OTHER_NODE: def(409, 'EREMOTE', 'The file is staged on another node and is not readable here until it is committed'),
  // Refs
  REF_NOT_FOUND: def(404, 'ENOENT', 'No such ref'),
  REF_CONFLICT: def(409, 'EAGAIN', 'The ref does not point at the expected commit'),
  COMMIT_FOLDER_DELETED: def(409, 'ENOENT', "The commit's folder was deleted: a ref cannot point at it"),
  INVALID_REF_NAME: def(400, 'EINVAL', 'Ref names are 1-128 characters of [A-Za-z0-9._-], not starting with "."'),
  // Auto-commit
  INVALID_AUTO_COMMIT_RULE: def(400, 'EINVAL', 'An auto-commit rule is FOLDERS:MARKER[:REF]: a non-empty folder glob, a file name or a known preset (@dcp), and a valid ref name'),
  AUTO_COMMIT_CONFLICT: def(409, 'EAGAIN', "The mount's auto-commit rules changed since the version the request expected"),
  // Commit groups
  GROUP_NOT_FOUND: def(404, 'ENOENT', 'No such commit group'),
  GROUP_NOT_PENDING: def(409, 'EINVAL', 'The commit group is already sealed or failed'),
  GROUP_FAILED: def(409, 'EIO', 'Another commit in the group failed'),
  // Storage and integrity
  STORAGE_ERROR: def(502, 'EIO', 'The object store failed'),
  OBJECT_NOT_FOUND: def(404, 'EIO', 'An object is missing from the store'),
  PRECONDITION_FAILED: def(412, 'EEXIST', 'A conditional write lost: the object exists or changed'),
  INTEGRITY_ERROR: def(502, 'EIO', 'Fetched bytes do not match the manifest sha256'),
  NO_SPACE: def(507, 'ENOSPC', 'The cache disk is full'),
  STAGED_DATA_LOST: def(500, 'EIO', "The staged bytes of a file are missing from this node's cache"),
  FILE_CHANGED: def(409, 'EAGAIN', 'The file changed while it was being uploaded: that upload stopped, and the new bytes are uploaded instead'),
  // Client side (SDK and CLI): never sent by the server; the status is what a proxy
  // would most likely have answered, so callers can treat them like wire codes.
  NETWORK_ERROR: def(503, 'EIO', 'The API could not be reached'),
  TIMEOUT: def(504, 'ETIMEDOUT', 'Timed out waiting for the API or for a commit'),
  NOT_MOUNTED: def(400, 'EINVAL', 'The path is not a Roset mountpoint'),
  UNMOUNT_FAILED: def(500, 'EBUSY', 'The mountpoint could not be unmounted'),
  PREFETCH_READ_FAILED: def(502, 'EIO', 'A file could not be read through the mount while prefetching it'),
  PREFETCH_EXCEEDS_CACHE: def(507, 'ENOSPC', "The committed files to prefetch are larger than the read cache of the daemon serving them (--cache-size): nothing was read"),
  TLS_ERROR: def(502, 'EIO', "The TLS connection to the API failed: the server's certificate is not trusted, does not name the host or has expired, or the server does not speak TLS"),
  // Start-up of roset-mount: never sent by the server
  INSECURE_LISTEN: def(400, 'EINVAL', 'The API would listen without TLS on an address other than loopback'),
  // Everything else
  INTERNAL: def(500, 'EIO', 'Internal error'),
} as const satisfies Record<string, CodeInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, value);
}

export function httpStatusOf(code: ErrorCode): number {
  return ERROR_CODES[code].status;
}

export function errnoOf(code: ErrorCode): Errno {
  return ERROR_CODES[code].errno;
}
