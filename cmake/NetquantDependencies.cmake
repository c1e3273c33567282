# Dependencies come from Debian packages (tools/setup.sh installs them); nothing is downloaded at build time.
find_package(OpenMP REQUIRED)
find_package(ZLIB REQUIRED)
find_package(nlohmann_json 3.9 REQUIRED)
find_package(CLI11 CONFIG QUIET)
if(NOT TARGET CLI11::CLI11)
  find_path(CLI11_INCLUDE_DIR CLI/CLI.hpp REQUIRED)
  add_library(CLI11::CLI11 INTERFACE IMPORTED)
  target_include_directories(CLI11::CLI11 INTERFACE "${CLI11_INCLUDE_DIR}")
endif()

# RE2 for the tensor-name filters (--include/--exclude): linear-time matching without recursion. std::regex
# (libstdc++) recurses per character, so a long tensor name from a hostile file overflows the stack, and a
# pattern such as (a*)*b takes exponential time; RE2 does neither.
find_path(NQ_RE2_INCLUDE_DIR re2/re2.h REQUIRED)
find_library(NQ_RE2_LIBRARY re2 REQUIRED)
add_library(nq_re2 INTERFACE)
target_include_directories(nq_re2 INTERFACE "${NQ_RE2_INCLUDE_DIR}")
target_link_libraries(nq_re2 INTERFACE "${NQ_RE2_LIBRARY}")

# BLAS for the built-in networks' GEMMs: OpenBLAS (cblas interface).
set(BLA_VENDOR OpenBLAS)
find_package(BLAS REQUIRED)
find_path(NQ_CBLAS_INCLUDE_DIR cblas.h PATHS /usr/include/x86_64-linux-gnu/openblas-pthread /usr/include/openblas
          /usr/include/x86_64-linux-gnu /usr/include/aarch64-linux-gnu/openblas-pthread REQUIRED)
add_library(nq_blas INTERFACE)
target_link_libraries(nq_blas INTERFACE ${BLAS_LIBRARIES})
target_include_directories(nq_blas INTERFACE "${NQ_CBLAS_INCLUDE_DIR}")
set(NQ_BLAS_LIBRARIES nq_blas)

if(NQ_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(NQ_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()

# MPI is optional: NQ_MPI=AUTO uses it when found.
set(NQ_HAVE_MPI OFF)
if(NOT NQ_MPI STREQUAL "OFF")
  find_package(MPI COMPONENTS CXX QUIET)
  if(MPI_CXX_FOUND)
    set(NQ_HAVE_MPI ON)
  elseif(NQ_MPI STREQUAL "ON")
    message(FATAL_ERROR "NQ_MPI=ON but no MPI was found (apt-get install libopenmpi-dev openmpi-bin)")
  endif()
endif()
message(STATUS "netquant: MPI ${NQ_HAVE_MPI}")
