# The native addons, built by `npm run build:native`; plain N-API, so the same build
# serves every Node.js release from 20 on.
# - roset_fuse (src/roset_fuse.c): the libfuse3 binding. Needs Debian's libfuse3-dev
#   (pkg-config fuse3), libssl-dev (libcrypto, for sha256 while writing) and a C compiler.
# - roset_hash (src/roset_hash.c): BLAKE3 for block hashes, from the official C
#   implementation in vendor/blake3 (runtime dispatch to SSE2/SSE4.1/AVX2/AVX-512 on
#   x86-64, NEON on arm64, portable C elsewhere). Needs only a C compiler.
{
  "targets": [
    {
      "target_name": "roset_fuse",
      "sources": ["src/roset_fuse.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11", "<!@(pkg-config --cflags fuse3 libcrypto)"],
      "libraries": ["<!@(pkg-config --libs fuse3 libcrypto)"],
      "defines": ["NAPI_VERSION=8"]
    },
    {
      "target_name": "roset_hash",
      "sources": ["src/roset_hash.c", "vendor/blake3/blake3.c", "vendor/blake3/blake3_dispatch.c", "vendor/blake3/blake3_portable.c"],
      "cflags": ["-O3", "-Wall", "-std=gnu11"],
      "conditions": [
        ["target_arch=='x64'", {
          "sources": ["vendor/blake3/blake3_sse2_x86-64_unix.S", "vendor/blake3/blake3_sse41_x86-64_unix.S",
                      "vendor/blake3/blake3_avx2_x86-64_unix.S", "vendor/blake3/blake3_avx512_x86-64_unix.S"]
        }],
        ["target_arch=='arm64'", {
          "sources": ["vendor/blake3/blake3_neon.c"],
          "defines": ["BLAKE3_USE_NEON=1"]
        }],
        ["target_arch!='x64'", {
          "defines": ["BLAKE3_NO_SSE2", "BLAKE3_NO_SSE41", "BLAKE3_NO_AVX2", "BLAKE3_NO_AVX512"]
        }]
      ]
    }
  ]
}
