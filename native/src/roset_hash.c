/* Native BLAKE3 for block hashes (src/util/block-hash.ts): the official C implementation
 * (native/vendor/blake3), which picks SSE4.1, AVX2 or AVX-512 at run time, several times
 * faster per core than the WebAssembly build it stands in for, with the same digests.
 *
 * Exports, all synchronous (the hash pool calls them on its worker threads):
 * - blake3(bytes: Uint8Array) -> string: lowercase hex of the 256-bit digest;
 * - blake3FileRange(path: string, offset: number, length: number) -> string: the same of
 *   `length` bytes of a file from `offset`, read here in 1 MiB steps, so no JavaScript
 *   buffer holds them. A file shorter than the range throws ("short read").
 *
 * Invariant: no state outside a call; safe in any number of threads and environments
 * (plain N-API, context-aware). */
#define NAPI_VERSION 8
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../vendor/blake3/blake3.h"

#define STEP (1u << 20)

static void hex_of(const uint8_t *out, char *hex) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < BLAKE3_OUT_LEN; i++) {
    hex[2 * i] = digits[out[i] >> 4];
    hex[2 * i + 1] = digits[out[i] & 15];
  }
  hex[2 * BLAKE3_OUT_LEN] = '\0';
}

static napi_value hex_value(napi_env env, blake3_hasher *h) {
  uint8_t out[BLAKE3_OUT_LEN];
  char hex[2 * BLAKE3_OUT_LEN + 1];
  blake3_hasher_finalize(h, out, BLAKE3_OUT_LEN);
  hex_of(out, hex);
  napi_value v;
  if (napi_create_string_latin1(env, hex, 2 * BLAKE3_OUT_LEN, &v) != napi_ok) return NULL;
  return v;
}

static napi_value js_blake3(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) {
    napi_throw_type_error(env, NULL, "blake3(bytes): bytes required");
    return NULL;
  }
  bool is_typed = false;
  napi_is_typedarray(env, argv[0], &is_typed);
  if (!is_typed) {
    napi_throw_type_error(env, NULL, "blake3(bytes): a Uint8Array is required");
    return NULL;
  }
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (napi_get_typedarray_info(env, argv[0], &type, &length, &data, NULL, NULL) != napi_ok || type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, "blake3(bytes): a Uint8Array is required");
    return NULL;
  }
  blake3_hasher h;
  blake3_hasher_init(&h);
  blake3_hasher_update(&h, data, length);
  return hex_value(env, &h);
}

static napi_value js_blake3_file_range(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3) {
    napi_throw_type_error(env, NULL, "blake3FileRange(path, offset, length): three arguments required");
    return NULL;
  }
  char path[4096];
  size_t plen = 0;
  double offset_d = 0, length_d = 0;
  if (napi_get_value_string_utf8(env, argv[0], path, sizeof path, &plen) != napi_ok || plen >= sizeof path - 1
      || napi_get_value_double(env, argv[1], &offset_d) != napi_ok || napi_get_value_double(env, argv[2], &length_d) != napi_ok
      || offset_d < 0 || length_d < 0) {
    napi_throw_type_error(env, NULL, "blake3FileRange(path, offset, length): a path and two non-negative numbers");
    return NULL;
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    char msg[4200];
    snprintf(msg, sizeof msg, "cannot open %s: %s", path, strerror(errno));
    napi_throw_error(env, NULL, msg);
    return NULL;
  }
  uint8_t *buf = malloc(STEP);
  if (!buf) {
    close(fd);
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  blake3_hasher h;
  blake3_hasher_init(&h);
  uint64_t at = (uint64_t)offset_d, left = (uint64_t)length_d;
  const char *failure = NULL;
  int err = 0;
  while (left > 0) {
    size_t want = left < STEP ? (size_t)left : STEP;
    ssize_t n = pread(fd, buf, want, (off_t)at);
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno;
      failure = "read failed";
      break;
    }
    if (n == 0) {
      failure = "short read";
      break;
    }
    blake3_hasher_update(&h, buf, (size_t)n);
    at += (uint64_t)n;
    left -= (uint64_t)n;
  }
  free(buf);
  close(fd);
  if (failure) {
    char msg[4300];
    snprintf(msg, sizeof msg, "%s at %llu of %s%s%s", failure, (unsigned long long)at, path, err ? ": " : "", err ? strerror(err) : "");
    napi_throw_error(env, NULL, msg);
    return NULL;
  }
  return hex_value(env, &h);
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_property_descriptor props[] = {
    {"blake3", NULL, js_blake3, NULL, NULL, NULL, napi_default, NULL},
    {"blake3FileRange", NULL, js_blake3_file_range, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}
