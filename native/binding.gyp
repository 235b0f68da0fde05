# The native libfuse3 binding (src/roset_fuse.c), built by `npm run build:native`.
# Needs Debian's libfuse3-dev (pkg-config fuse3), libssl-dev (libcrypto, for sha256 while
# writing) and a C compiler; plain N-API, so the
# same build serves every Node.js release from 20 on.
{
  "targets": [
    {
      "target_name": "roset_fuse",
      "sources": ["src/roset_fuse.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11", "<!@(pkg-config --cflags fuse3 libcrypto)"],
      "libraries": ["<!@(pkg-config --libs fuse3 libcrypto)"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
