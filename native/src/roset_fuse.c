/*
 * roset_fuse: the native libfuse3 binding of roset-mount (N-API, low-level API).
 *
 * Owns: one FUSE session per mount, the threads that serve it, the data path
 * (READ and WRITE as pread/pwrite on file descriptors the TypeScript core opened), the
 * per-handle write flag, and the table of requests waiting for a reply from JavaScript.
 * Everything else (namespace, barrier, inode <-> node mapping) belongs to TypeScript:
 * src/fuse/native.ts receives every metadata and control request through one
 * thread-safe function and answers it with the reply* functions below.
 *
 * Threads:
 * - the loop thread runs fuse_session_loop_mt, which starts up to `maxThreads` worker
 *   threads; READ, WRITE, FSYNCDIR and the FLUSH of a handle without H_WRITE are
 *   answered on those threads and never touch JavaScript;
 * - every other request is queued to the JavaScript thread (napi thread-safe function)
 *   and answered later, from JavaScript, by request id. That includes the FLUSH of a
 *   handle with H_WRITE (close(2) of a writable file): it carries whether bytes were
 *   written through the handle since the last FLUSH (H_WRITTEN, cleared by the FLUSH)
 *   and whether they are still being hashed in order (H_HASH), and the core publishes
 *   size and mtime before it replies;
 * - unmount and inode invalidation run on the libuv thread pool, because both block in
 *   the kernel until FUSE requests (served by the worker threads) have been answered.
 *
 * Invariants:
 * - A fuse_req_t is replied to exactly once. JavaScript never sees the pointer: it
 *   gets an id (slot index + generation), and a second or late reply finds the slot
 *   empty and is refused (-ESTALE) instead of touching freed memory.
 * - fi->fh of an open file is a `struct handle *` created when JavaScript answered the
 *   open and freed when the kernel releases it. The kernel sends nothing for an fh
 *   after RELEASE (writeback requests hold the file until they finish), so the data
 *   path reads it without a lock. The fd inside belongs to the TypeScript core, which
 *   closes it when it handles the release.
 * - A WRITE through a handle without H_WRITE fails with EBADF here, with no round trip
 *   (the core answers the same condition with NOT_OPEN_FOR_WRITING, EBADF). TypeScript
 *   sets the flag once, in its open or create reply; the kernel normally never sends
 *   such a WRITE.
 * - Data-path syscall failures become the errno the TypeScript core gives the same
 *   local failure (data_errno; src/fuse/local-errors.ts; pinned by
 *   test/fuse/errno-parity.test.ts): ENOSPC and EDQUOT -> ENOSPC, EFBIG -> EFBIG,
 *   anything else -> EIO (reported to JavaScript for the log); EINTR is retried.
 * - Permissions are the kernel's: the mount always has `default_permissions`, so the
 *   kernel checks mode bits against the uid, gid and mode in the attributes JavaScript
 *   replies with, as for ext4. Nothing here checks access or looks at the daemon's uid
 *   (geteuid only picks umount2 or fusermount3 at unmount).
 * - Times cross the boundary as whole seconds and nanoseconds (two numbers each, both
 *   exact in a double), never as fractional milliseconds; the kernel is told the
 *   granularity is 1 ns.
 * - A READ through a handle with H_GATED never reads the fd here on its own: it is
 *   answered by replyRead, after JavaScript verified the bytes it covers.
 * - With H_HASH, a digest is reported at RELEASE only if every byte of the file went
 *   through this handle's WRITEs in order from offset 0 (next_off == hashed, hash_ok);
 *   any other write ends hashing for the handle, and the uploader hashes instead.
 * - Signals are blocked on every FUSE thread, so SIGTERM/SIGINT reach Node's handlers.
 * - The session is destroyed only after its loop thread has been joined and the
 *   thread-safe function has drained, so no request can outlive its session.
 */
#define FUSE_USE_VERSION 312
#define _GNU_SOURCE
#include <fuse_lowlevel.h>
#include <node_api.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

extern char **environ;

/* ---- operations sent to JavaScript (mirrored in src/fuse/native-binding.ts) ---- */
enum {
  OP_LOOKUP = 1,
  OP_FORGET = 2,
  OP_GETATTR = 3,
  OP_SETATTR = 4,
  OP_MKDIR = 5,
  OP_UNLINK = 6,
  OP_RMDIR = 7,
  OP_RENAME = 8,
  OP_OPEN = 9,
  OP_RELEASE = 10,
  OP_FSYNC = 11,
  OP_OPENDIR = 12,
  OP_READDIR = 13,
  OP_RELEASEDIR = 14,
  OP_STATFS = 15,
  OP_CREATE = 16,
  OP_INIT = 17,   /* event: the kernel's INIT, with what was negotiated */
  OP_IOERROR = 18, /* event: a data-path syscall failed unexpectedly (for the log) */
  OP_FLUSH = 19,
  OP_ENDED = 20, /* event: the session loop returned (an unmount, ours or from outside) */
  OP_READ = 21,   /* a READ through a handle with H_GATED: JavaScript waits for its blocks */
  OP_PREFIX = 22  /* event: the written-once prefix of a hashing handle passed a multiple of PREFIX_STEP */
};

/* Handle flags. H_WRITE is set by TypeScript in its open or create reply (writes
   allowed); H_WRITTEN by the data path (bytes landed since the last FLUSH), because the
   core never sees those writes and must be told, at FLUSH or RELEASE, that the file
   changed. */
#define H_WRITE 1u
#define H_WRITTEN 2u
/* H_HASH (TypeScript, at open): the file is empty and this is its only writer, so the
   data path hashes the bytes while they arrive in order (sha256); the digest goes to
   TypeScript at RELEASE, and the background upload need not read the file again. */
#define H_HASH 4u
/* H_GATED (TypeScript, at open): the fd is a committed object still downloading, whose
   bytes are readable only once their blocks verified. Every READ through the handle
   goes to JavaScript (OP_READ), which replies with replyRead once the blocks covering
   it verified (the pread is then done here) or with EIO; replyRead clears the flag
   when the whole object is in, and READ is a pread in C again. */
#define H_GATED 8u

/* Admitted bytes past which the handle's hasher thread starts (smaller files are
   hashed at RELEASE), and the size of its reads. */
#define HASH_INLINE_MAX (1u << 20)
#define HASH_CHUNK (1u << 20)
/* WRITEs ahead of the written prefix that can wait to join it (the kernel keeps at most
   max_background = 64 writeback requests in flight). */
#define HASH_PENDING 64

#define MAX_WRITE (1u << 20)

/* How often a hashing handle reports the growth of its written-once prefix (OP_PREFIX):
   the core uploads the parts of a large file that prefix covers while it is written. */
#define PREFIX_STEP ((uint64_t)8 << 20)

#define CHECK(call)                                                  \
  do {                                                               \
    napi_status s_ = (call);                                         \
    if (s_ != napi_ok) {                                             \
      napi_throw_error(env, NULL, "roset_fuse: N-API call failed: " #call); \
      return NULL;                                                   \
    }                                                                \
  } while (0)

/* ---- one open file ---- */
struct handle {
  int fd;
  _Atomic uint32_t flags;
  uint64_t ts_fh; /* the TypeScript core's handle number */
  struct handle *next; /* chain in rfs.handles */
  /* Hash while writing (H_HASH). [0, next_off) is the prefix of the file known to be
     written exactly once, by this handle; a WRITE that lands further on (several
     worker threads serve the kernel's writeback at once) waits in `pend` until the
     prefix reaches it, without holding up its reply. Any write into the admitted prefix,
     or overlapping a pending one, ends hashing (hash_ok = 0). A thread of the handle's
     own, at the lowest CPU priority, reads the admitted prefix back from the staged file
     (page cache) and hashes it once it passes HASH_INLINE_MAX; RELEASE hashes what is
     left. The WRITE path never pays for the hash. `hashed` bytes are in `md`.
     Guarded by `mu`, except `md`, which the hasher owns while it runs and RELEASE after. */
  EVP_MD_CTX *md;
  uint64_t next_off;
  uint64_t hashed;
  struct { uint64_t off, end; } pend[HASH_PENDING];
  int npend;
  _Atomic int hash_ok; /* written under mu; read without it only as a hint (WRITE fast path) */
  pthread_mutex_t mu;
  pthread_cond_t cv_data;  /* bytes admitted, or closing (hasher) */
  int hasher_started;
  int hasher_closing;
  pthread_t hasher;
};

static void hasher_stop(struct handle *h);

/* Frees a handle, stopping its hasher first (a handle still open at unmount has one). */
static void free_handle(struct handle *h) {
  if (h->md) {
    pthread_mutex_lock(&h->mu);
    hasher_stop(h);
    pthread_mutex_unlock(&h->mu);
    EVP_MD_CTX_free(h->md);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv_data);
  }
  free(h);
}

/* The handle's hasher: reads admitted bytes back from the staged file and hashes them,
   in order, until closing and caught up. Lowest priority while the file is written;
   normal priority once the handle is released, when the digest is awaited. */
static void *hasher_main(void *arg) {
  struct handle *h = arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  pid_t tid = (pid_t)syscall(SYS_gettid);
  setpriority(PRIO_PROCESS, (id_t)tid, 19);
  int boosted = 0;
  unsigned char *buf = malloc(HASH_CHUNK);
  pthread_mutex_lock(&h->mu);
  if (!buf) h->hash_ok = 0;
  while (h->hash_ok) {
    while (h->hash_ok && h->hashed == h->next_off && !h->hasher_closing) pthread_cond_wait(&h->cv_data, &h->mu);
    if (!h->hash_ok || h->hashed == h->next_off) break; /* invalid, or closing and caught up */
    if (h->hasher_closing && !boosted) {
      boosted = 1;
      setpriority(PRIO_PROCESS, (id_t)tid, 0); /* best effort: needs CAP_SYS_NICE */
    }
    uint64_t from = h->hashed;
    size_t want = h->next_off - from < HASH_CHUNK ? (size_t)(h->next_off - from) : HASH_CHUNK;
    pthread_mutex_unlock(&h->mu);
    size_t got = 0;
    int ok = 1;
    while (got < want) {
      ssize_t n = pread(h->fd, buf + got, want - got, (off_t)(from + got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ok = 0;
        break;
      }
      got += (size_t)n;
    }
    if (ok && EVP_DigestUpdate(h->md, buf, got) != 1) ok = 0;
    pthread_mutex_lock(&h->mu);
    if (ok) h->hashed += got;
    else h->hash_ok = 0;
  }
  pthread_mutex_unlock(&h->mu);
  free(buf);
  return NULL;
}

/* Under mu: stops the hasher (once it caught up) and waits for it. */
static void hasher_stop(struct handle *h) {
  if (!h->hasher_started) return;
  h->hasher_closing = 1;
  pthread_cond_signal(&h->cv_data);
  pthread_mutex_unlock(&h->mu);
  pthread_join(h->hasher, NULL);
  pthread_mutex_lock(&h->mu);
  h->hasher_started = 0;
}

/* Under mu, hasher stopped: hashes what the hasher had not (small files: all of it). */
static void hash_rest(struct handle *h) {
  unsigned char buf[64 * 1024];
  while (h->hash_ok && h->hashed < h->next_off) {
    size_t want = h->next_off - h->hashed < sizeof buf ? (size_t)(h->next_off - h->hashed) : sizeof buf;
    ssize_t n = pread(h->fd, buf, want, (off_t)h->hashed);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || EVP_DigestUpdate(h->md, buf, (size_t)n) != 1) {
      h->hash_ok = 0;
      break;
    }
    h->hashed += (uint64_t)n;
  }
}

#define HANDLE_BUCKETS 1024

/* ---- one mount ---- */
struct rfs {
  struct fuse_session *se;
  char *mountpoint;
  napi_threadsafe_function tsfn;
  pthread_t loop_thread;
  int loop_started;
  _Atomic int loop_done;
  int loop_rc;
  int max_threads;
  int writeback; /* asked for the writeback cache */
  int closing;   /* unmount has begun (JS thread only) */
  int dead;      /* session destroyed; the struct lives on until both owners let go */
  int owners;    /* the JS external and the thread-safe function (JS thread only) */

  pthread_mutex_t handles_mu;
  struct handle *handles[HANDLE_BUCKETS];

  /* negotiated in INIT, reported to JavaScript */
  unsigned negotiated_want;
  unsigned negotiated_max_write;
  unsigned negotiated_max_readahead;

  /* data-path counters, for measuring request sizes (relaxed: statistics only) */
  _Atomic uint64_t n_read, n_write, bytes_read, bytes_written, n_write_refused;
  /* Requests answered in C off the data path's success case (metrics, read at scrape
     time): FLUSH of a read-only handle, and errors by errno. Relaxed increments. */
  _Atomic uint64_t n_flush_local, n_err_enospc, n_err_efbig, n_err_eio, n_err_enomem;
};

/* ---- requests waiting for JavaScript ---- */
struct slot {
  fuse_req_t req;
  struct rfs *rfs;
  uint32_t gen;
  int32_t next_free;
};

static pthread_mutex_t slots_mu = PTHREAD_MUTEX_INITIALIZER;
static struct slot *slots;
static uint32_t slots_len, slots_cap;
static int32_t slots_free = -1;

#define SLOT_BITS 24
#define GEN_MASK 0x0FFFFFFFu /* id = gen << 24 | index stays below 2^52: exact in a double */

static uint64_t slot_put(fuse_req_t req, struct rfs *rfs) {
  pthread_mutex_lock(&slots_mu);
  int32_t idx;
  if (slots_free >= 0) {
    idx = slots_free;
    slots_free = slots[idx].next_free;
  } else {
    if (slots_len == slots_cap) {
      uint32_t cap = slots_cap ? slots_cap * 2 : 256;
      if (cap > (1u << SLOT_BITS)) {
        pthread_mutex_unlock(&slots_mu);
        return 0;
      }
      struct slot *n = realloc(slots, cap * sizeof *n);
      if (!n) {
        pthread_mutex_unlock(&slots_mu);
        return 0;
      }
      memset(n + slots_cap, 0, (cap - slots_cap) * sizeof *n);
      slots = n;
      slots_cap = cap;
    }
    idx = (int32_t)slots_len++;
  }
  struct slot *s = &slots[idx];
  s->gen = (s->gen + 1) & GEN_MASK;
  if (s->gen == 0) s->gen = 1;
  s->req = req;
  s->rfs = rfs;
  s->next_free = -1;
  uint64_t id = ((uint64_t)s->gen << SLOT_BITS) | (uint64_t)idx;
  pthread_mutex_unlock(&slots_mu);
  return id;
}

static void slot_free_locked(int32_t idx) {
  slots[idx].req = NULL;
  slots[idx].rfs = NULL;
  slots[idx].next_free = slots_free;
  slots_free = idx;
}

/* Takes the request out of its slot; NULL when the id is unknown, stale or replied. */
static fuse_req_t slot_take(uint64_t id) {
  uint32_t idx = (uint32_t)(id & ((1u << SLOT_BITS) - 1));
  uint32_t gen = (uint32_t)(id >> SLOT_BITS);
  fuse_req_t req = NULL;
  pthread_mutex_lock(&slots_mu);
  if (idx < slots_len && slots[idx].req && slots[idx].gen == gen) {
    req = slots[idx].req;
    slot_free_locked((int32_t)idx);
  }
  pthread_mutex_unlock(&slots_mu);
  return req;
}

/* At teardown: every request of `rfs` still waiting gets ENODEV (the kernel is gone). */
static void slots_fail_all(struct rfs *rfs) {
  pthread_mutex_lock(&slots_mu);
  for (uint32_t i = 0; i < slots_len; i++) {
    if (slots[i].req && slots[i].rfs == rfs) {
      fuse_req_t req = slots[i].req;
      slot_free_locked((int32_t)i);
      fuse_reply_err(req, ENODEV);
    }
  }
  pthread_mutex_unlock(&slots_mu);
}

/* ---- handles ---- */
static void handle_insert(struct rfs *rfs, struct handle *h) {
  unsigned b = (unsigned)(h->ts_fh % HANDLE_BUCKETS);
  pthread_mutex_lock(&rfs->handles_mu);
  h->next = rfs->handles[b];
  rfs->handles[b] = h;
  pthread_mutex_unlock(&rfs->handles_mu);
}

static void handle_remove(struct rfs *rfs, struct handle *h) {
  unsigned b = (unsigned)(h->ts_fh % HANDLE_BUCKETS);
  pthread_mutex_lock(&rfs->handles_mu);
  for (struct handle **p = &rfs->handles[b]; *p; p = &(*p)->next) {
    if (*p == h) {
      *p = h->next;
      break;
    }
  }
  pthread_mutex_unlock(&rfs->handles_mu);
}

/* ---- calls queued to JavaScript ---- */
struct call {
  int op;
  uint64_t id; /* reply slot; 0 for events */
  uint64_t ino;
  uint64_t fh;
  double a, b, c;
  char *name, *name2;
  int has_attr;
  double attr[8]; /* setattr: mode, uid, gid, size, atime sec, atime nsec, mtime sec, mtime nsec; mkdir, create: mode, caller uid, caller gid */
  size_t nforget;
  struct fuse_forget_data *forgets;
};

static struct rfs *req_rfs(fuse_req_t req) { return (struct rfs *)fuse_req_userdata(req); }

static struct call *call_new(int op, uint64_t ino) {
  struct call *c = calloc(1, sizeof *c);
  if (c) {
    c->op = op;
    c->ino = ino;
  }
  return c;
}

static void call_free(struct call *c) {
  free(c->name);
  free(c->name2);
  free(c->forgets);
  free(c);
}

static int queue_call(struct rfs *rfs, struct call *c) {
  return napi_call_threadsafe_function(rfs->tsfn, c, napi_tsfn_nonblocking) == napi_ok ? 0 : -1;
}

/* Sends a request to JavaScript; answers it here when that is impossible. */
static void to_js(fuse_req_t req, struct call *c) {
  struct rfs *rfs = req_rfs(req);
  if (!c) {
    fuse_reply_err(req, ENOMEM);
    return;
  }
  c->id = slot_put(req, rfs);
  if (c->id == 0) {
    call_free(c);
    fuse_reply_err(req, ENOMEM);
    return;
  }
  if (queue_call(rfs, c) != 0) {
    fuse_req_t r = slot_take(c->id);
    call_free(c);
    if (r) fuse_reply_err(r, ENODEV);
  }
}

static void event_to_js(struct rfs *rfs, struct call *c) {
  if (!c) return;
  if (queue_call(rfs, c) != 0) call_free(c);
}

static char *dupstr(const char *s) { return s ? strdup(s) : NULL; }

/* Runs on the JavaScript thread; env is NULL when the function is being torn down. */
static void call_js(napi_env env, napi_value js_cb, void *context, void *data) {
  struct call *c = data;
  (void)context;
  if (env == NULL || js_cb == NULL) {
    /* Teardown: the slot, if any, is failed by slots_fail_all. */
    call_free(c);
    return;
  }
  napi_value undefined, argv[10];
  napi_get_undefined(env, &undefined);
  if (c->op == OP_FORGET && c->forgets) {
    for (size_t i = 0; i < c->nforget; i++) {
      napi_create_int32(env, OP_FORGET, &argv[0]);
      napi_create_double(env, 0, &argv[1]);
      napi_create_double(env, (double)c->forgets[i].ino, &argv[2]);
      napi_create_double(env, 0, &argv[3]);
      napi_create_double(env, (double)c->forgets[i].nlookup, &argv[4]);
      for (int k = 5; k < 10; k++) argv[k] = undefined;
      napi_call_function(env, undefined, js_cb, 10, argv, NULL);
    }
    call_free(c);
    return;
  }
  napi_create_int32(env, c->op, &argv[0]);
  napi_create_double(env, (double)c->id, &argv[1]);
  napi_create_double(env, (double)c->ino, &argv[2]);
  napi_create_double(env, (double)c->fh, &argv[3]);
  napi_create_double(env, c->a, &argv[4]);
  napi_create_double(env, c->b, &argv[5]);
  napi_create_double(env, c->c, &argv[6]);
  argv[7] = undefined;
  argv[8] = undefined;
  argv[9] = undefined;
  if (c->name) napi_create_string_utf8(env, c->name, NAPI_AUTO_LENGTH, &argv[7]);
  if (c->name2) napi_create_string_utf8(env, c->name2, NAPI_AUTO_LENGTH, &argv[8]);
  if (c->has_attr) {
    napi_create_array_with_length(env, 8, &argv[9]);
    for (uint32_t i = 0; i < 8; i++) {
      napi_value v;
      napi_create_double(env, c->attr[i], &v);
      napi_set_element(env, argv[9], i, v);
    }
  }
  napi_status st = napi_call_function(env, undefined, js_cb, 10, argv, NULL);
  if (st != napi_ok) {
    /* The dispatcher threw: never leave the kernel waiting. */
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value e;
      napi_get_and_clear_last_exception(env, &e);
    }
    if (c->id) {
      fuse_req_t r = slot_take(c->id);
      if (r) fuse_reply_err(r, EIO);
    }
  }
  call_free(c);
}

/* ---- the data path: served on the FUSE worker threads ---- */

static void report_io_error(struct rfs *rfs, uint64_t ino, int err, const char *what) {
  struct call *c = call_new(OP_IOERROR, ino);
  if (!c) return;
  c->a = err;
  c->name = dupstr(what);
  event_to_js(rfs, c);
}

/* The errno of a failed data-path syscall: what the TypeScript core answers for the
   same local failure (src/fuse/local-errors.ts: NO_SPACE, FILE_TOO_LARGE, else
   INTERNAL), so both bindings and both halves of this one agree. EINTR never gets here
   (retried). test/fuse/errno-parity.test.ts checks this against src/errors/codes.ts. */
static int data_errno(int err) {
  if (err == ENOSPC || err == EDQUOT) return ENOSPC;
  if (err == EFBIG) return EFBIG;
  return EIO;
}

/* Answers a failed data-path syscall; an unexpected failure (EIO: the core's INTERNAL)
   is also reported to JavaScript for the log, a full disk or too large a file is not. */
static void reply_data_error(fuse_req_t req, struct rfs *rfs, uint64_t ino, int err, const char *syscall_name) {
  int e = data_errno(err);
  if (e == EIO) report_io_error(rfs, ino, err, syscall_name);
  atomic_fetch_add_explicit(e == ENOSPC ? &rfs->n_err_enospc : e == EFBIG ? &rfs->n_err_efbig : &rfs->n_err_eio, 1, memory_order_relaxed);
  fuse_reply_err(req, e);
}

/* One read buffer per worker thread, freed when libfuse retires the thread. */
struct read_buf {
  char *p;
  size_t size;
};
static pthread_key_t read_buf_key;
static pthread_once_t read_buf_once = PTHREAD_ONCE_INIT;
static void read_buf_free(void *v) {
  struct read_buf *b = v;
  free(b->p);
  free(b);
}
static void read_buf_init(void) { pthread_key_create(&read_buf_key, read_buf_free); }
static struct read_buf *thread_read_buf(size_t size) {
  pthread_once(&read_buf_once, read_buf_init);
  struct read_buf *b = pthread_getspecific(read_buf_key);
  if (!b) {
    b = calloc(1, sizeof *b);
    if (!b) return NULL;
    pthread_setspecific(read_buf_key, b);
  }
  if (size > b->size) {
    char *n = realloc(b->p, size);
    if (!n) return NULL;
    b->p = n;
    b->size = size;
  }
  return b;
}

static void serve_read(fuse_req_t req, struct rfs *rfs, uint64_t ino, int fd, size_t size, off_t off);

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  struct handle *h = (struct handle *)(uintptr_t)fi->fh;
  if (atomic_load_explicit(&h->flags, memory_order_acquire) & H_GATED) {
    struct call *c = call_new(OP_READ, ino);
    if (c) {
      c->fh = h->ts_fh;
      c->a = (double)off;
      c->b = (double)size;
      c->c = (double)h->fd;
    }
    to_js(req, c);
    return;
  }
  serve_read(req, req_rfs(req), ino, h->fd, size, off);
}

/* pread of [off, off + size) and the reply (short at the end of the file). */
static void serve_read(fuse_req_t req, struct rfs *rfs, uint64_t ino, int fd, size_t size, off_t off) {
  struct read_buf *b = thread_read_buf(size);
  if (!b) {
    atomic_fetch_add_explicit(&rfs->n_err_enomem, 1, memory_order_relaxed);
    fuse_reply_err(req, ENOMEM);
    return;
  }
  char *read_buf = b->p;
  size_t got = 0;
  while (got < size) {
    ssize_t n = pread(fd, read_buf + got, size - got, off + (off_t)got);
    if (n < 0) {
      if (errno == EINTR) continue;
      reply_data_error(req, rfs, ino, errno, "pread");
      return;
    }
    if (n == 0) break; /* end of file */
    got += (size_t)n;
  }
  atomic_fetch_add_explicit(&rfs->n_read, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&rfs->bytes_read, got, memory_order_relaxed);
  fuse_reply_buf(req, read_buf, got);
}

static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  struct handle *h = (struct handle *)(uintptr_t)fi->fh;
  struct rfs *rfs = req_rfs(req);
  if (!(atomic_load_explicit(&h->flags, memory_order_acquire) & H_WRITE)) {
    atomic_fetch_add_explicit(&rfs->n_write_refused, 1, memory_order_relaxed);
    fuse_reply_err(req, EBADF);
    return;
  }
  /* The bytes land first (in parallel with other WRITEs); then, if hashing, they are
     admitted to the hash in file order. */
  size_t done = 0;
  int err = 0;
  while (done < size) {
    ssize_t n = pwrite(h->fd, buf + done, size - done, off + (off_t)done);
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    done += (size_t)n;
  }
  /* Once hashing has ended for the handle (a rewrite, a hole), WRITEs skip the lock. */
  uint64_t prefix_report = 0;
  if (h->md && atomic_load_explicit(&h->hash_ok, memory_order_relaxed)) {
    pthread_mutex_lock(&h->mu);
    uint64_t prefix_before = h->next_off;
    uint64_t from = (uint64_t)off, to = (uint64_t)off + done;
    if (!h->hash_ok || done == 0) {
      /* nothing to admit */
    } else if (err != 0 || from < h->next_off) {
      h->hash_ok = 0; /* failed, or wrote into the admitted prefix again */
    } else if (from > h->next_off) {
      for (int i = 0; i < h->npend && h->hash_ok; i++) {
        if (from < h->pend[i].end && h->pend[i].off < to) h->hash_ok = 0;
      }
      if (h->hash_ok && h->npend < HASH_PENDING) {
        h->pend[h->npend].off = from;
        h->pend[h->npend].end = to;
        h->npend++;
      } else {
        h->hash_ok = 0;
      }
    } else {
      h->next_off = to;
      /* Pending writes that now touch the prefix join it. */
      for (int moved = 1; moved && h->hash_ok;) {
        moved = 0;
        for (int i = 0; i < h->npend; i++) {
          if (h->pend[i].off < h->next_off) {
            h->hash_ok = 0;
            break;
          }
          if (h->pend[i].off == h->next_off) {
            h->next_off = h->pend[i].end;
            h->pend[i] = h->pend[--h->npend];
            moved = 1;
            break;
          }
        }
      }
      if (h->hash_ok && !h->hasher_started && h->next_off > HASH_INLINE_MAX) {
        if (pthread_create(&h->hasher, NULL, hasher_main, h) == 0) h->hasher_started = 1;
        else h->hash_ok = 0;
      }
      pthread_cond_signal(&h->cv_data);
      if (h->hash_ok && h->next_off / PREFIX_STEP != prefix_before / PREFIX_STEP) prefix_report = h->next_off;
    }
    pthread_mutex_unlock(&h->mu);
  }
  if (prefix_report > 0) {
    struct call *pc = call_new(OP_PREFIX, ino);
    if (pc) {
      pc->fh = h->ts_fh;
      pc->a = (double)prefix_report;
    }
    event_to_js(rfs, pc);
  }
  if (err != 0 && done == 0) {
    reply_data_error(req, rfs, ino, err, "pwrite");
    return;
  }
  if (err != 0 && data_errno(err) == EIO) report_io_error(rfs, ino, err, "pwrite");
  /* A short write: the bytes that did land are reported; the kernel retries the rest. */
  if (!(atomic_load_explicit(&h->flags, memory_order_relaxed) & H_WRITTEN)) atomic_fetch_or(&h->flags, H_WRITTEN);
  atomic_fetch_add_explicit(&rfs->n_write, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&rfs->bytes_written, done, memory_order_relaxed);
  fuse_reply_write(req, done);
}

/* close(2) of a handle with H_WRITE goes to the core, with whether bytes landed since
   the last FLUSH (H_WRITTEN, cleared here) and whether the in-order hash still holds;
   the core publishes size and mtime before it replies, and close waits for it. One
   without H_WRITE is answered here. With the writeback cache the kernel has written
   its dirty pages back before it sends FLUSH. */
static void ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  struct handle *h = (struct handle *)(uintptr_t)fi->fh;
  uint32_t flags = atomic_fetch_and(&h->flags, ~H_WRITTEN);
  if (!(flags & H_WRITE)) {
    atomic_fetch_add_explicit(&req_rfs(req)->n_flush_local, 1, memory_order_relaxed);
    fuse_reply_err(req, 0);
    return;
  }
  struct call *c = call_new(OP_FLUSH, ino);
  if (c) {
    c->fh = h->ts_fh;
    c->a = (flags & H_WRITTEN) ? 1 : 0;
    if (h->md) {
      pthread_mutex_lock(&h->mu);
      c->b = h->hash_ok ? 1 : 0;
      pthread_mutex_unlock(&h->mu);
    }
  }
  to_js(req, c);
}

static void ll_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  (void)ino;
  (void)datasync;
  (void)fi;
  fuse_reply_err(req, 0);
}

static void ll_unsupported3(fuse_req_t req, fuse_ino_t a, fuse_ino_t b, const char *c) {
  (void)a;
  (void)b;
  (void)c;
  fuse_reply_err(req, ENOTSUP);
}

static void ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name) {
  (void)link;
  (void)parent;
  (void)name;
  fuse_reply_err(req, ENOTSUP);
}

static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev) {
  (void)parent;
  (void)name;
  (void)mode;
  (void)rdev;
  fuse_reply_err(req, ENOTSUP);
}

/* ---- requests answered by JavaScript ---- */

static uint64_t ts_fh_of(struct fuse_file_info *fi) {
  return fi && fi->fh ? ((struct handle *)(uintptr_t)fi->fh)->ts_fh : 0;
}

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  struct call *c = call_new(OP_LOOKUP, parent);
  if (c) c->name = dupstr(name);
  to_js(req, c);
}

static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  struct rfs *rfs = req_rfs(req);
  fuse_reply_none(req);
  struct call *c = call_new(OP_FORGET, ino);
  if (c) c->a = (double)nlookup;
  event_to_js(rfs, c);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  struct rfs *rfs = req_rfs(req);
  struct call *c = call_new(OP_FORGET, 0);
  if (c) {
    c->forgets = malloc(count * sizeof *forgets);
    if (c->forgets) {
      memcpy(c->forgets, forgets, count * sizeof *forgets);
      c->nforget = count;
    }
  }
  fuse_reply_none(req);
  if (c && c->forgets) event_to_js(rfs, c);
  else if (c) call_free(c);
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  struct call *c = call_new(OP_GETATTR, ino);
  if (c) c->fh = ts_fh_of(fi);
  to_js(req, c);
}

static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
  struct call *c = call_new(OP_SETATTR, ino);
  if (c) {
    c->fh = ts_fh_of(fi);
    c->a = to_set;
    c->has_attr = 1;
    c->attr[0] = attr->st_mode;
    c->attr[1] = attr->st_uid;
    c->attr[2] = attr->st_gid;
    c->attr[3] = (double)attr->st_size;
    /* Whole seconds and nanoseconds: both exact in a double (|sec| < 2^53). */
    c->attr[4] = (double)attr->st_atim.tv_sec;
    c->attr[5] = (double)attr->st_atim.tv_nsec;
    c->attr[6] = (double)attr->st_mtim.tv_sec;
    c->attr[7] = (double)attr->st_mtim.tv_nsec;
  }
  to_js(req, c);
}

/* The caller's uid and gid own what MKDIR and CREATE make: they ride in the attr array
   as SETATTR's do ([mode, uid, gid, ...]). */
static void set_caller(fuse_req_t req, struct call *c, mode_t mode) {
  const struct fuse_ctx *ctx = fuse_req_ctx(req);
  c->has_attr = 1;
  c->attr[0] = mode;
  c->attr[1] = ctx->uid;
  c->attr[2] = ctx->gid;
}

static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  struct call *c = call_new(OP_MKDIR, parent);
  if (c) {
    c->name = dupstr(name);
    c->a = mode;
    set_caller(req, c, mode);
  }
  to_js(req, c);
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
  struct call *c = call_new(OP_UNLINK, parent);
  if (c) c->name = dupstr(name);
  to_js(req, c);
}

static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
  struct call *c = call_new(OP_RMDIR, parent);
  if (c) c->name = dupstr(name);
  to_js(req, c);
}

static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent, const char *newname, unsigned int flags) {
  struct call *c = call_new(OP_RENAME, parent);
  if (c) {
    c->name = dupstr(name);
    c->name2 = dupstr(newname);
    c->a = flags;
    c->b = (double)newparent;
  }
  to_js(req, c);
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  struct call *c = call_new(OP_OPEN, ino);
  if (c) c->a = fi->flags;
  to_js(req, c);
}

static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi) {
  struct call *c = call_new(OP_CREATE, parent);
  if (c) {
    c->name = dupstr(name);
    c->a = mode;
    c->b = fi->flags;
    set_caller(req, c, mode);
  }
  to_js(req, c);
}

static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  struct rfs *rfs = req_rfs(req);
  struct handle *h = (struct handle *)(uintptr_t)fi->fh;
  struct call *c = call_new(OP_RELEASE, ino);
  if (h) {
    handle_remove(rfs, h);
    if (c) {
      c->fh = h->ts_fh;
      /* Written since the last FLUSH: through a shared mmap after close, for one. */
      c->a = (atomic_load(&h->flags) & H_WRITTEN) ? 1 : 0;
      /* The digest of a file written in order from 0 through this handle only. */
      if (h->md) {
        pthread_mutex_lock(&h->mu);
        hasher_stop(h);
        if (h->npend > 0) h->hash_ok = 0; /* a hole: not every byte was written here */
        hash_rest(h);
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        if (h->hash_ok && h->hashed == h->next_off && EVP_DigestFinal_ex(h->md, md, &len) == 1) {
          char *hex = malloc(2 * len + 1);
          if (hex) {
            for (unsigned int i = 0; i < len; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
            c->name = hex;
            c->b = (double)h->next_off;
          }
        }
        pthread_mutex_unlock(&h->mu);
      }
    }
    free_handle(h);
  }
  to_js(req, c);
}

static void ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  struct call *c = call_new(OP_FSYNC, ino);
  if (c) {
    c->fh = ts_fh_of(fi);
    c->a = datasync;
  }
  to_js(req, c);
}

static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)fi;
  to_js(req, call_new(OP_OPENDIR, ino));
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  struct call *c = call_new(OP_READDIR, ino);
  if (c) {
    c->fh = fi->fh; /* a directory handle is JavaScript's own number */
    c->a = (double)size;
    c->b = (double)off;
  }
  to_js(req, c);
}

static void ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  struct call *c = call_new(OP_RELEASEDIR, ino);
  if (c) c->fh = fi->fh;
  to_js(req, c);
}

static void ll_statfs(fuse_req_t req, fuse_ino_t ino) { to_js(req, call_new(OP_STATFS, ino)); }

static void ll_init(void *userdata, struct fuse_conn_info *conn) {
  struct rfs *rfs = userdata;
  /* The whole point of this binding: the kernel keeps written pages and sends them in
     big batches; without it each write(2) becomes a synchronous FUSE round trip. */
  if (rfs->writeback && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) conn->want |= FUSE_CAP_WRITEBACK_CACHE;
  conn->max_write = MAX_WRITE;
  /* Writeback and readahead requests are "background" requests: let enough of them be
     in flight to keep every worker thread busy. */
  conn->max_background = 64;
  conn->congestion_threshold = 48;
  /* Times are exact to the nanosecond on both sides of the binding: tell the kernel,
     so the mtime it keeps under the writeback cache (and a utimensat's nanoseconds)
     are not truncated. */
  conn->time_gran = 1;
  rfs->negotiated_want = conn->want;
  rfs->negotiated_max_write = conn->max_write;
  rfs->negotiated_max_readahead = conn->max_readahead;
  struct call *c = call_new(OP_INIT, 0);
  if (c) {
    c->a = (conn->want & FUSE_CAP_WRITEBACK_CACHE) ? 1 : 0;
    c->b = conn->max_write;
    c->c = conn->max_readahead;
  }
  event_to_js(rfs, c);
}

static const struct fuse_lowlevel_ops ops = {
    .init = ll_init,
    .lookup = ll_lookup,
    .forget = ll_forget,
    .forget_multi = ll_forget_multi,
    .getattr = ll_getattr,
    .setattr = ll_setattr,
    .mknod = ll_mknod,
    .mkdir = ll_mkdir,
    .unlink = ll_unlink,
    .rmdir = ll_rmdir,
    .symlink = ll_symlink,
    .rename = ll_rename,
    .link = ll_unsupported3,
    .open = ll_open,
    .read = ll_read,
    .write = ll_write,
    .flush = ll_flush,
    .release = ll_release,
    .fsync = ll_fsync,
    .opendir = ll_opendir,
    .readdir = ll_readdir,
    .releasedir = ll_releasedir,
    .fsyncdir = ll_fsyncdir,
    .statfs = ll_statfs,
    .create = ll_create,
    /* Not implemented on purpose: xattr ops answer ENOSYS, which the kernel remembers
       (no GETXATTR round trip for security.capability on every write(2)); access is
       the kernel's to check (default_permissions: no ACCESS requests are sent); locks
       stay local to the kernel. */
};

/* ---- the loop thread ---- */
static void *loop_main(void *arg) {
  struct rfs *rfs = arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL); /* inherited by the worker threads */
  struct fuse_loop_config *cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(cfg, 0);
  fuse_loop_cfg_set_max_threads(cfg, (unsigned)rfs->max_threads);
  fuse_loop_cfg_set_idle_threads(cfg, (unsigned)rfs->max_threads);
  rfs->loop_rc = fuse_session_loop_mt(rfs->se, cfg);
  fuse_loop_cfg_destroy(cfg);
  atomic_store(&rfs->loop_done, 1);
  /* The thread-safe function lives until the loop is joined, so this may still queue;
     JavaScript tells an unmount of its own from one from outside (umount). */
  event_to_js(rfs, call_new(OP_ENDED, 0));
  return NULL;
}

/* ---- teardown (JS thread) ---- */
static void rfs_release(struct rfs *rfs) {
  if (--rfs->owners > 0) return;
  pthread_mutex_destroy(&rfs->handles_mu);
  free(rfs->mountpoint);
  free(rfs);
}

static void external_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  rfs_release(data);
}

/* Runs after the thread-safe function drained, so no call to JavaScript is queued. */
static void tsfn_finalize(napi_env env, void *finalize_data, void *hint) {
  (void)env;
  (void)hint;
  struct rfs *rfs = finalize_data;
  rfs->dead = 1;
  slots_fail_all(rfs);
  if (rfs->se) {
    fuse_session_unmount(rfs->se);
    fuse_session_destroy(rfs->se);
    rfs->se = NULL;
  }
  for (int b = 0; b < HANDLE_BUCKETS; b++) {
    struct handle *h = rfs->handles[b];
    while (h) {
      struct handle *n = h->next;
      free_handle(h);
      h = n;
    }
    rfs->handles[b] = NULL;
  }
  rfs_release(rfs);
}

/* ---- N-API helpers ---- */
static struct rfs *get_rfs(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || !p) {
    napi_throw_type_error(env, NULL, "roset_fuse: not a session");
    return NULL;
  }
  if (((struct rfs *)p)->dead) {
    napi_throw_error(env, "ENODEV", "roset_fuse: the session is unmounted");
    return NULL;
  }
  return p;
}

static double num(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return d;
}

static int get_bool_prop(napi_env env, napi_value obj, const char *key, int dflt) {
  bool has = false;
  if (napi_has_named_property(env, obj, key, &has) != napi_ok || !has) return dflt;
  napi_value v;
  napi_get_named_property(env, obj, key, &v);
  bool b = false;
  if (napi_get_value_bool(env, v, &b) != napi_ok) return dflt;
  return b;
}

static int get_int_prop(napi_env env, napi_value obj, const char *key, int dflt) {
  bool has = false;
  if (napi_has_named_property(env, obj, key, &has) != napi_ok || !has) return dflt;
  napi_value v;
  napi_get_named_property(env, obj, key, &v);
  int32_t i = 0;
  if (napi_get_value_int32(env, v, &i) != napi_ok) return dflt;
  return i;
}

static napi_value ret_int(napi_env env, int v) {
  napi_value r;
  napi_create_int32(env, v, &r);
  return r;
}

/* A whole number in [lo, hi] from JavaScript, exactly (no rounding, no truncation). */
static int get_whole(napi_env env, napi_value v, double lo, double hi, int64_t *out) {
  double d = 0;
  if (napi_get_value_double(env, v, &d) != napi_ok) return -1;
  if (!(d >= lo && d <= hi) || d != (double)(int64_t)d) return -1;
  *out = (int64_t)d;
  return 0;
}

#define ATTR_LEN 14
#define MAX_SAFE 9007199254740991.0 /* 2^53 - 1: every whole number up to it is exact */

/* attr array from JavaScript (AttrArray in src/fuse/native-binding.ts):
   [ino, mode, nlink, uid, gid, size, blocks, blksize,
    atimeSec, atimeNsec, mtimeSec, mtimeNsec, ctimeSec, ctimeNsec].
   Every element a whole number; nanoseconds in [0, 999999999]. -1 if malformed. */
static int read_attr(napi_env env, napi_value arr, struct stat *st) {
  memset(st, 0, sizeof *st);
  int64_t f[ATTR_LEN] = {0};
  for (uint32_t i = 0; i < ATTR_LEN; i++) {
    napi_value v;
    int is_nsec = i >= 8 && (i - 8) % 2 == 1;
    double lo = i >= 8 && !is_nsec ? -MAX_SAFE : 0;
    double hi = is_nsec ? 999999999.0 : MAX_SAFE;
    if (napi_get_element(env, arr, i, &v) != napi_ok) return -1;
    if (get_whole(env, v, lo, hi, &f[i]) != 0) return -1;
  }
  st->st_ino = (ino_t)f[0];
  st->st_mode = (mode_t)f[1];
  st->st_nlink = (nlink_t)f[2];
  st->st_uid = (uid_t)f[3];
  st->st_gid = (gid_t)f[4];
  st->st_size = (off_t)f[5];
  st->st_blocks = (blkcnt_t)f[6];
  st->st_blksize = (blksize_t)f[7];
  struct timespec *t[3] = {&st->st_atim, &st->st_mtim, &st->st_ctim};
  for (int i = 0; i < 3; i++) {
    t[i]->tv_sec = (time_t)f[8 + 2 * i];
    t[i]->tv_nsec = (long)f[9 + 2 * i];
  }
  return 0;
}

#define ARGS(n)                                                           \
  size_t argc = n;                                                        \
  napi_value argv[n];                                                     \
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));            \
  if (argc < n) {                                                         \
    napi_throw_type_error(env, NULL, "roset_fuse: missing arguments");    \
    return NULL;                                                          \
  }

/* mount(mountpoint, options, dispatch) -> session */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  ARGS(3);
  char mnt[4096];
  size_t len = 0;
  CHECK(napi_get_value_string_utf8(env, argv[0], mnt, sizeof mnt, &len));
  int allow_other = get_bool_prop(env, argv[1], "allowOther", 0);
  int debug = get_bool_prop(env, argv[1], "debug", 0);
  int writeback = get_bool_prop(env, argv[1], "writebackCache", 1);
  int max_threads = get_int_prop(env, argv[1], "maxThreads", 16);
  if (max_threads < 1) max_threads = 1;

  struct rfs *rfs = calloc(1, sizeof *rfs);
  if (!rfs) {
    napi_throw_error(env, NULL, "roset_fuse: out of memory");
    return NULL;
  }
  pthread_mutex_init(&rfs->handles_mu, NULL);
  rfs->mountpoint = strdup(mnt);
  rfs->max_threads = max_threads;
  rfs->writeback = writeback;

  char opts[256];
  /* default_permissions, always: the kernel checks access against the attributes'
     uid, gid and mode (nothing here does). */
  snprintf(opts, sizeof opts, "fsname=roset,subtype=roset,default_permissions%s", allow_other ? ",allow_other" : "");
  char *args_v[6];
  int args_c = 0;
  args_v[args_c++] = "roset-mount";
  args_v[args_c++] = "-o";
  args_v[args_c++] = opts;
  if (debug) args_v[args_c++] = "-d";
  args_v[args_c] = NULL;
  struct fuse_args args = FUSE_ARGS_INIT(args_c, args_v);

  rfs->se = fuse_session_new(&args, &ops, sizeof ops, rfs);
  if (!rfs->se) {
    pthread_mutex_destroy(&rfs->handles_mu);
    free(rfs->mountpoint);
    free(rfs);
    napi_throw_error(env, NULL, "roset_fuse: fuse_session_new failed (see stderr)");
    return NULL;
  }
  if (fuse_session_mount(rfs->se, mnt) != 0) {
    fuse_session_destroy(rfs->se);
    pthread_mutex_destroy(&rfs->handles_mu);
    free(rfs->mountpoint);
    free(rfs);
    napi_throw_error(env, NULL, "roset_fuse: fuse_session_mount failed (see stderr)");
    return NULL;
  }

  napi_value name;
  napi_create_string_utf8(env, "roset_fuse", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[2], NULL, name, 0, 1, rfs, tsfn_finalize, rfs, call_js, &rfs->tsfn) != napi_ok) {
    fuse_session_unmount(rfs->se);
    fuse_session_destroy(rfs->se);
    pthread_mutex_destroy(&rfs->handles_mu);
    free(rfs->mountpoint);
    free(rfs);
    napi_throw_error(env, NULL, "roset_fuse: cannot create the thread-safe function");
    return NULL;
  }
  int err = pthread_create(&rfs->loop_thread, NULL, loop_main, rfs);
  if (err != 0) {
    fuse_session_unmount(rfs->se);
    fuse_session_destroy(rfs->se);
    rfs->se = NULL;
    rfs->owners = 1;
    napi_release_threadsafe_function(rfs->tsfn, napi_tsfn_abort); /* finalizer frees rfs */
    napi_throw_error(env, NULL, "roset_fuse: cannot start the FUSE loop thread");
    return NULL;
  }
  rfs->loop_started = 1;
  rfs->owners = 2;
  napi_value ext;
  if (napi_create_external(env, rfs, external_finalize, NULL, &ext) != napi_ok) {
    rfs->owners = 1;
    napi_throw_error(env, NULL, "roset_fuse: cannot create the session object");
    return NULL;
  }
  return ext;
}

/* ---- replies (JS thread) ---- */

static fuse_req_t take(napi_env env, napi_value idv) {
  return slot_take((uint64_t)num(env, idv));
}

/* replyErr(id, errno) -> 0 | -errno */
static napi_value js_reply_err(napi_env env, napi_callback_info info) {
  ARGS(2);
  fuse_req_t req = take(env, argv[0]);
  if (!req) return ret_int(env, -ESTALE);
  return ret_int(env, fuse_reply_err(req, (int)num(env, argv[1])));
}

/* An entry from (attr[], attrTimeout, entryTimeout); -1 (a TypeError thrown) if the
   attributes are malformed. Read before the request is taken, so a bad call leaves it
   waiting for a proper reply. */
static int read_entry(napi_env env, napi_value *args, struct fuse_entry_param *e) {
  memset(e, 0, sizeof *e);
  if (read_attr(env, args[0], &e->attr) != 0) {
    napi_throw_type_error(env, NULL, "roset_fuse: bad attr");
    return -1;
  }
  e->ino = e->attr.st_ino;
  e->generation = 0; /* inode numbers are never reused (staging index autoincrement) */
  e->attr_timeout = num(env, args[1]);
  e->entry_timeout = num(env, args[2]);
  return 0;
}

/* replyEntry(id, attr[], attrTimeout, entryTimeout) */
static napi_value js_reply_entry(napi_env env, napi_callback_info info) {
  ARGS(4);
  struct fuse_entry_param e;
  if (read_entry(env, &argv[1], &e) != 0) return NULL;
  fuse_req_t req = take(env, argv[0]);
  if (!req) return ret_int(env, -ESTALE);
  return ret_int(env, fuse_reply_entry(req, &e));
}

/* replyAttr(id, attr[], attrTimeout) */
static napi_value js_reply_attr(napi_env env, napi_callback_info info) {
  ARGS(3);
  struct stat st;
  if (read_attr(env, argv[1], &st) != 0) {
    napi_throw_type_error(env, NULL, "roset_fuse: bad attr");
    return NULL;
  }
  fuse_req_t req = take(env, argv[0]);
  if (!req) return ret_int(env, -ESTALE);
  return ret_int(env, fuse_reply_attr(req, &st, num(env, argv[2])));
}

static struct handle *new_handle(double ts_fh, double fd, double flags) {
  struct handle *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  h->fd = (int)fd;
  h->ts_fh = (uint64_t)ts_fh;
  uint32_t f = (uint32_t)flags;
  if ((f & H_HASH) && (f & H_WRITE)) {
    /* Without a context the file is simply not hashed here; the upload hashes it. */
    h->md = EVP_MD_CTX_new();
    if (h->md && EVP_DigestInit_ex(h->md, EVP_sha256(), NULL) == 1) {
      h->hash_ok = 1;
      pthread_mutex_init(&h->mu, NULL);
      pthread_cond_init(&h->cv_data, NULL);
    } else if (h->md) {
      EVP_MD_CTX_free(h->md);
      h->md = NULL;
    }
  }
  atomic_store(&h->flags, f & ~H_HASH);
  return h;
}

/* The shared half of replyOpen and replyCreate: a handle for the core's (tsFh, fd,
   flags), registered, then the reply; if the reply fails (the open was interrupted) the
   kernel will never release the handle, so it goes here, and the caller must release
   the core's. `e` is NULL for an open. */
static napi_value reply_with_handle(napi_env env, fuse_req_t req, napi_value *hargs, const struct fuse_entry_param *e) {
  struct rfs *rfs = req_rfs(req);
  struct handle *h = new_handle(num(env, hargs[0]), num(env, hargs[1]), num(env, hargs[2]));
  if (!h) {
    fuse_reply_err(req, ENOMEM);
    return ret_int(env, -ENOMEM);
  }
  bool keep = false;
  napi_get_value_bool(env, hargs[3], &keep);
  struct fuse_file_info fi;
  memset(&fi, 0, sizeof fi);
  fi.fh = (uint64_t)(uintptr_t)h;
  fi.keep_cache = keep ? 1 : 0;
  handle_insert(rfs, h);
  int rc = e ? fuse_reply_create(req, e, &fi) : fuse_reply_open(req, &fi);
  if (rc != 0) {
    handle_remove(rfs, h);
    free_handle(h);
  }
  return ret_int(env, rc);
}

/* replyRead(id, ino, fd, offset, size, ungateTsFh) -> 0: the OP_READ of a gated handle,
   whose bytes JavaScript verified: pread and reply here. ungateTsFh > 0: the whole
   object is in, so that handle's READs stay in C from now on. */
static napi_value js_reply_read(napi_env env, napi_callback_info info) {
  ARGS(6);
  fuse_req_t req = take(env, argv[0]);
  if (!req) return ret_int(env, -ESTALE);
  struct rfs *rfs = req_rfs(req);
  uint64_t ungate = (uint64_t)num(env, argv[5]);
  if (ungate > 0) {
    /* The handle cannot be freed meanwhile: the kernel releases it only after this READ. */
    pthread_mutex_lock(&rfs->handles_mu);
    for (struct handle *h = rfs->handles[ungate % HANDLE_BUCKETS]; h; h = h->next) {
      if (h->ts_fh == ungate) atomic_fetch_and_explicit(&h->flags, ~H_GATED, memory_order_release);
    }
    pthread_mutex_unlock(&rfs->handles_mu);
  }
  serve_read(req, rfs, (uint64_t)num(env, argv[1]), (int)num(env, argv[2]), (size_t)num(env, argv[4]), (off_t)num(env, argv[3]));
  return ret_int(env, 0);
}

/* replyOpen(id, tsFh, fd, handleFlags, keepCache) -> 0 | -errno. */
static napi_value js_reply_open(napi_env env, napi_callback_info info) {
  ARGS(5);
  fuse_req_t req = take(env, argv[0]);
  if (!req) return ret_int(env, -ESTALE);
  return reply_with_handle(env, req, &argv[1], NULL);
}

/* replyCreate(id, attr[], attrTimeout, entryTimeout, tsFh, fd, handleFlags, keepCache) */
static napi_value js_reply_create(napi_env env, napi_callback_info info) {
  ARGS(8);
  struct fuse_entry_param e;
  if (read_entry(env, &argv[1], &e) != 0) return NULL;
  fuse_req_t req = take(env, argv[0]);
  if (!req) return ret_int(env, -ESTALE);
  return reply_with_handle(env, req, &argv[4], &e);
}

/* replyOpendir(id, dirFh) */
static napi_value js_reply_opendir(napi_env env, napi_callback_info info) {
  ARGS(2);
  fuse_req_t req = take(env, argv[0]);
  if (!req) return ret_int(env, -ESTALE);
  struct fuse_file_info fi;
  memset(&fi, 0, sizeof fi);
  fi.fh = (uint64_t)num(env, argv[1]);
  return ret_int(env, fuse_reply_open(req, &fi));
}

/* replyDirents(id, size, firstOffset, names[], inos[], modes[]) -> entries sent or -errno.
   Entry i gets offset firstOffset + i + 1, so the next readdir resumes after it. */
static napi_value js_reply_dirents(napi_env env, napi_callback_info info) {
  ARGS(6);
  size_t size = (size_t)num(env, argv[1]);
  double first = num(env, argv[2]);
  uint32_t n = 0;
  CHECK(napi_get_array_length(env, argv[3], &n));
  fuse_req_t req = take(env, argv[0]);
  if (!req) return ret_int(env, -ESTALE);
  char *buf = malloc(size ? size : 1);
  if (!buf) return ret_int(env, fuse_reply_err(req, ENOMEM));
  size_t pos = 0;
  uint32_t sent = 0;
  char name[1024];
  for (uint32_t i = 0; i < n; i++) {
    napi_value nv, iv, mv;
    size_t nl = 0;
    napi_get_element(env, argv[3], i, &nv);
    napi_get_element(env, argv[4], i, &iv);
    napi_get_element(env, argv[5], i, &mv);
    if (napi_get_value_string_utf8(env, nv, name, sizeof name, &nl) != napi_ok) break;
    struct stat st;
    memset(&st, 0, sizeof st);
    st.st_ino = (ino_t)num(env, iv);
    st.st_mode = (mode_t)num(env, mv);
    size_t need = fuse_add_direntry(req, buf + pos, size - pos, name, &st, (off_t)(first + i + 1));
    if (need > size - pos) break;
    pos += need;
    sent++;
  }
  int rc = fuse_reply_buf(req, buf, pos);
  free(buf);
  return ret_int(env, rc < 0 ? rc : (int)sent);
}

/* replyStatfs(id, [bsize, frsize, blocks, bfree, bavail, files, ffree, favail, namemax]) */
static napi_value js_reply_statfs(napi_env env, napi_callback_info info) {
  ARGS(2);
  double f[9] = {0};
  for (uint32_t i = 0; i < 9; i++) {
    napi_value v;
    napi_get_element(env, argv[1], i, &v);
    napi_get_value_double(env, v, &f[i]);
  }
  fuse_req_t req = take(env, argv[0]);
  if (!req) return ret_int(env, -ESTALE);
  struct statvfs s;
  memset(&s, 0, sizeof s);
  s.f_bsize = (unsigned long)f[0];
  s.f_frsize = (unsigned long)f[1];
  s.f_blocks = (fsblkcnt_t)f[2];
  s.f_bfree = (fsblkcnt_t)f[3];
  s.f_bavail = (fsblkcnt_t)f[4];
  s.f_files = (fsfilcnt_t)f[5];
  s.f_ffree = (fsfilcnt_t)f[6];
  s.f_favail = (fsfilcnt_t)f[7];
  s.f_namemax = (unsigned long)f[8];
  return ret_int(env, fuse_reply_statfs(req, &s));
}

/* stats(session) -> counters of the data path and what INIT negotiated */
static napi_value js_stats(napi_env env, napi_callback_info info) {
  ARGS(1);
  struct rfs *rfs = get_rfs(env, argv[0]);
  if (!rfs) return NULL;
  napi_value o, v;
  napi_create_object(env, &o);
#define PUT(key, val)                          \
  napi_create_double(env, (double)(val), &v); \
  napi_set_named_property(env, o, key, v);
  PUT("reads", atomic_load(&rfs->n_read));
  PUT("writes", atomic_load(&rfs->n_write));
  PUT("bytesRead", atomic_load(&rfs->bytes_read));
  PUT("bytesWritten", atomic_load(&rfs->bytes_written));
  PUT("writesRefused", atomic_load(&rfs->n_write_refused));
  PUT("flushesLocal", atomic_load_explicit(&rfs->n_flush_local, memory_order_relaxed));
  PUT("errENOSPC", atomic_load_explicit(&rfs->n_err_enospc, memory_order_relaxed));
  PUT("errEFBIG", atomic_load_explicit(&rfs->n_err_efbig, memory_order_relaxed));
  PUT("errEIO", atomic_load_explicit(&rfs->n_err_eio, memory_order_relaxed));
  PUT("errENOMEM", atomic_load_explicit(&rfs->n_err_enomem, memory_order_relaxed));
  PUT("maxWrite", rfs->negotiated_max_write);
  PUT("maxReadahead", rfs->negotiated_max_readahead);
#undef PUT
  napi_get_boolean(env, (rfs->negotiated_want & FUSE_CAP_WRITEBACK_CACHE) != 0, &v);
  napi_set_named_property(env, o, "writebackCache", v);
  return o;
}

/* ---- asynchronous work: invalidation and unmount ---- */
struct work {
  napi_async_work w;
  napi_deferred deferred;
  struct rfs *rfs;
  int kind; /* 1 = invalidate, 2 = unmount */
  uint64_t ino;
  int64_t off, len;
  int rc;
};

static void run_fusermount(const char *mnt, int *rc) {
  pid_t pid;
  char *argv[] = {"fusermount3", "-u", (char *)mnt, NULL};
  if (posix_spawnp(&pid, "fusermount3", NULL, NULL, argv, environ) != 0) {
    *rc = -ENOENT;
    return;
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  *rc = WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EBUSY;
}

static void work_execute(napi_env env, void *data) {
  (void)env;
  struct work *w = data;
  struct rfs *rfs = w->rfs;
  if (w->kind == 1) {
    /* Blocks until the kernel has written back (laundered) the dirty pages in range,
       which it does with WRITE requests answered by the worker threads. */
    w->rc = fuse_lowlevel_notify_inval_inode(rfs->se, (fuse_ino_t)w->ino, (off_t)w->off, (off_t)w->len);
    return;
  }
  if (!atomic_load(&rfs->loop_done)) {
    int rc;
    if (geteuid() == 0) {
      rc = umount2(rfs->mountpoint, 0) == 0 ? 0 : -errno;
    } else {
      run_fusermount(rfs->mountpoint, &rc);
    }
    if (rc != 0 && !(rc == -EINVAL && atomic_load(&rfs->loop_done))) {
      w->rc = rc;
      return;
    }
  }
  /* The kernel has dropped the connection: every worker's read() fails and the loop
     returns. */
  pthread_join(rfs->loop_thread, NULL);
  rfs->loop_started = 0;
  w->rc = 0;
}

static void work_complete(napi_env env, napi_status status, void *data) {
  struct work *w = data;
  napi_value v;
  if (w->kind == 2 && w->rc == 0) {
    /* Loop joined: nothing calls JavaScript any more. Drain and destroy. */
    napi_release_threadsafe_function(w->rfs->tsfn, napi_tsfn_abort);
  } else if (w->kind == 2) {
    w->rfs->closing = 0;
  }
  if (status != napi_ok) {
    napi_create_int32(env, -EIO, &v);
  } else {
    napi_create_int32(env, w->rc, &v);
  }
  napi_resolve_deferred(env, w->deferred, v);
  napi_delete_async_work(env, w->w);
  free(w);
}

static napi_value start_work(napi_env env, struct work *w) {
  napi_value promise, name;
  CHECK(napi_create_promise(env, &w->deferred, &promise));
  napi_create_string_utf8(env, w->kind == 1 ? "roset_fuse_inval" : "roset_fuse_unmount", NAPI_AUTO_LENGTH, &name);
  CHECK(napi_create_async_work(env, NULL, name, work_execute, work_complete, w, &w->w));
  CHECK(napi_queue_async_work(env, w->w));
  return promise;
}

/* invalInode(session, ino, off, len) -> Promise<0 | -errno>; off 0 / len 0: the whole
   file, dirty pages written back first. */
static napi_value js_inval_inode(napi_env env, napi_callback_info info) {
  ARGS(4);
  struct rfs *rfs = get_rfs(env, argv[0]);
  if (!rfs) return NULL;
  struct work *w = calloc(1, sizeof *w);
  if (!w) {
    napi_throw_error(env, NULL, "roset_fuse: out of memory");
    return NULL;
  }
  w->rfs = rfs;
  w->kind = 1;
  w->ino = (uint64_t)num(env, argv[1]);
  w->off = (int64_t)num(env, argv[2]);
  w->len = (int64_t)num(env, argv[3]);
  if (rfs->closing || !rfs->loop_started) {
    /* Nothing to flush through a connection that is going away. */
    napi_value promise, v;
    napi_deferred d;
    napi_create_promise(env, &d, &promise);
    napi_create_int32(env, -ENODEV, &v);
    napi_resolve_deferred(env, d, v);
    free(w);
    return promise;
  }
  return start_work(env, w);
}

/* unmount(session) -> Promise<0 | -errno>. -EBUSY: files are open; the mount stays. */
static napi_value js_unmount(napi_env env, napi_callback_info info) {
  ARGS(1);
  struct rfs *rfs = get_rfs(env, argv[0]);
  if (!rfs) return NULL;
  if (rfs->closing || !rfs->loop_started) {
    napi_value promise, v;
    napi_deferred d;
    napi_create_promise(env, &d, &promise);
    napi_create_int32(env, rfs->closing ? -EALREADY : 0, &v);
    napi_resolve_deferred(env, d, v);
    return promise;
  }
  struct work *w = calloc(1, sizeof *w);
  if (!w) {
    napi_throw_error(env, NULL, "roset_fuse: out of memory");
    return NULL;
  }
  rfs->closing = 1;
  w->rfs = rfs;
  w->kind = 2;
  return start_work(env, w);
}

/* ---- service manager readiness ---- */

/* notify(socketPath, state) -> 0 | -errno: sends `state` (e.g. "READY=1\nSTATUS=...")
   as one datagram to the unix socket systemd names in NOTIFY_SOCKET (the sd_notify
   protocol); a path that starts with '@' is in the abstract namespace. Sent from this
   process, so the sender is the service's main pid (NotifyAccess=main suffices). A
   receiver whose queue is full gets at most one second before -EAGAIN. */
static napi_value js_notify(napi_env env, napi_callback_info info) {
  ARGS(2);
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  char path[sizeof sa.sun_path + 1];
  size_t plen = 0;
  CHECK(napi_get_value_string_utf8(env, argv[0], path, sizeof path, &plen));
  if (plen < 2 || plen >= sizeof sa.sun_path || (path[0] != '/' && path[0] != '@')) return ret_int(env, -EINVAL);
  memcpy(sa.sun_path, path, plen);
  socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
  if (path[0] == '@') sa.sun_path[0] = '\0'; /* abstract: the length, not a NUL, ends the name */
  else salen += 1;
  size_t slen = 0;
  CHECK(napi_get_value_string_utf8(env, argv[1], NULL, 0, &slen));
  char *state = malloc(slen + 1);
  if (!state) return ret_int(env, -ENOMEM);
  if (napi_get_value_string_utf8(env, argv[1], state, slen + 1, &slen) != napi_ok) {
    free(state);
    napi_throw_error(env, NULL, "roset_fuse: notify: the state must be a string");
    return NULL;
  }
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    int e = errno;
    free(state);
    return ret_int(env, -e);
  }
  struct timeval tv = {.tv_sec = 1, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  ssize_t n;
  do {
    n = sendto(fd, state, slen, MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
  } while (n < 0 && errno == EINTR);
  int e = n < 0 ? errno : ((size_t)n == slen ? 0 : EMSGSIZE);
  close(fd);
  free(state);
  return ret_int(env, -e);
}

/* ---- for tests only ---- */

/* dataErrno(errno) -> the errno a data-path syscall failing with it is answered with
   (data_errno), for test/fuse/errno-parity.test.ts. */
static napi_value js_data_errno(napi_env env, napi_callback_info info) {
  ARGS(1);
  return ret_int(env, data_errno((int)num(env, argv[0])));
}

/* setAttrBits() -> { MODE: FUSE_SET_ATTR_MODE, ... } as compiled in, for the test that
   keeps SetAttr in src/fuse/native-binding.ts equal to libfuse's values. */
static napi_value js_set_attr_bits(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value o, v;
  CHECK(napi_create_object(env, &o));
#define BIT(key, val)                      \
  CHECK(napi_create_uint32(env, (val), &v)); \
  CHECK(napi_set_named_property(env, o, key, v));
  BIT("MODE", FUSE_SET_ATTR_MODE);
  BIT("UID", FUSE_SET_ATTR_UID);
  BIT("GID", FUSE_SET_ATTR_GID);
  BIT("SIZE", FUSE_SET_ATTR_SIZE);
  BIT("ATIME", FUSE_SET_ATTR_ATIME);
  BIT("MTIME", FUSE_SET_ATTR_MTIME);
  BIT("ATIME_NOW", FUSE_SET_ATTR_ATIME_NOW);
  BIT("MTIME_NOW", FUSE_SET_ATTR_MTIME_NOW);
  BIT("FORCE", FUSE_SET_ATTR_FORCE);
  BIT("CTIME", FUSE_SET_ATTR_CTIME);
#ifdef FUSE_SET_ATTR_KILL_SUID
  BIT("KILL_SUID", FUSE_SET_ATTR_KILL_SUID);
#endif
#ifdef FUSE_SET_ATTR_KILL_SGID
  BIT("KILL_SGID", FUSE_SET_ATTR_KILL_SGID);
#endif
#ifdef FUSE_SET_ATTR_FILE
  BIT("FILE", FUSE_SET_ATTR_FILE);
#endif
#ifdef FUSE_SET_ATTR_KILL_PRIV
  BIT("KILL_PRIV", FUSE_SET_ATTR_KILL_PRIV);
#endif
#ifdef FUSE_SET_ATTR_OPEN
  BIT("OPEN", FUSE_SET_ATTR_OPEN);
#endif
#ifdef FUSE_SET_ATTR_TIMES_SET
  BIT("TIMES_SET", FUSE_SET_ATTR_TIMES_SET);
#endif
#ifdef FUSE_SET_ATTR_TOUCH
  BIT("TOUCH", FUSE_SET_ATTR_TOUCH);
#endif
#undef BIT
  return o;
}

static napi_value init_module(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"mount", NULL, js_mount, NULL, NULL, NULL, napi_default, NULL},
      {"unmount", NULL, js_unmount, NULL, NULL, NULL, napi_default, NULL},
      {"replyErr", NULL, js_reply_err, NULL, NULL, NULL, napi_default, NULL},
      {"replyEntry", NULL, js_reply_entry, NULL, NULL, NULL, napi_default, NULL},
      {"replyAttr", NULL, js_reply_attr, NULL, NULL, NULL, napi_default, NULL},
      {"replyOpen", NULL, js_reply_open, NULL, NULL, NULL, napi_default, NULL},
      {"replyRead", NULL, js_reply_read, NULL, NULL, NULL, napi_default, NULL},
      {"replyCreate", NULL, js_reply_create, NULL, NULL, NULL, napi_default, NULL},
      {"replyOpendir", NULL, js_reply_opendir, NULL, NULL, NULL, napi_default, NULL},
      {"replyDirents", NULL, js_reply_dirents, NULL, NULL, NULL, napi_default, NULL},
      {"replyStatfs", NULL, js_reply_statfs, NULL, NULL, NULL, napi_default, NULL},
      {"invalInode", NULL, js_inval_inode, NULL, NULL, NULL, napi_default, NULL},
      {"stats", NULL, js_stats, NULL, NULL, NULL, napi_default, NULL},
      {"dataErrno", NULL, js_data_errno, NULL, NULL, NULL, napi_default, NULL},
      {"setAttrBits", NULL, js_set_attr_bits, NULL, NULL, NULL, napi_default, NULL},
      {"notify", NULL, js_notify, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init_module)
