#!/bin/sh
# Remove from a built venv what a scoring run never loads:  slim-venv.sh VENV
# Run in the build stage (it needs strip, from binutils); the final stage copies the result.
#   - the packages' test suites, C/C++ headers and sources, Cython sources and type stubs
#     (for building against a package or checking types, not for running it)
#   - pyarrow's Flight RPC and S3 filesystem (~40 MB): the runner reads through its own stores
#     and pyarrow.fs reports S3FileSystem as not built; pyarrow's own C++ test module
#   - the symbol tables of the shared libraries (strip --strip-unneeded keeps the dynamic
#     symbols the loader uses). Libraries in *.libs/ are left alone: auditwheel's patchelf
#     rewrote them and strip breaks them (numpy's OpenBLAS no longer loads). Every stripped
#     library is then loaded in a fresh interpreter, and one that no longer loads is put back.
#   - the copies pip made of one library under several names (a wheel cannot hold symlinks):
#     libX.so and libX.so.N.M become links to libX.so.N, the name the loader asks for
set -eu
venv="$1"
python="$venv/bin/python"
for site in "$venv"/lib/python3*/site-packages; do
  find "$site" -depth -mindepth 1 -type d -name tests -exec rm -rf {} +
  find "$site" -type f \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' -o -name '*.pyi' \
       -o -name '*.h' -o -name '*.hpp' -o -name '*.c' -o -name '*.cc' -o -name '*.cpp' \) -delete
  rm -rf "$site/pyarrow/include" "$site/pyarrow/includes" "$site/pyarrow/src" \
         "$site/numpy/_core/include"
  rm -f "$site"/pyarrow/libarrow_flight.so* "$site"/pyarrow/libarrow_python_flight.so* \
        "$site"/pyarrow/_flight.*.so "$site"/pyarrow/libarrow_s3.so* "$site"/pyarrow/_s3fs.*.so \
        "$site"/pyarrow/_pyarrow_cpp_tests.*.so

  if command -v strip >/dev/null 2>&1; then
    kept=0
    find "$site" -type f \( -name '*.so' -o -name '*.so.*' \) ! -path '*.libs/*' >/tmp/slim-libs
    while IFS= read -r lib; do
      cp -p "$lib" /tmp/slim-original
      if ! strip --strip-unneeded "$lib" 2>/dev/null \
         || ! "$python" -c 'import ctypes, sys; ctypes.CDLL(sys.argv[1])' "$lib" 2>/dev/null; then
        cp -p /tmp/slim-original "$lib"
        kept=$((kept + 1))
      fi
    done </tmp/slim-libs
    echo "slim-venv: stripped $(($(wc -l </tmp/slim-libs) - kept)) shared libraries, kept $kept as they were"
    rm -f /tmp/slim-libs /tmp/slim-original
  else
    echo "slim-venv: no strip here: the shared libraries keep their symbol tables"
  fi

  find "$site" -type f -name 'lib*.so.*' | while IFS= read -r lib; do
    case "${lib##*.so.}" in *.*) continue ;; esac  # libX.so.N only
    for copy in "${lib%.so.*}.so" "$lib".*; do
      if [ -f "$copy" ] && [ ! -L "$copy" ] && cmp -s "$copy" "$lib"; then
        ln -sf "$(basename "$lib")" "$copy"
      fi
    done
  done
done
