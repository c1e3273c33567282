# `cmake --install build --prefix P`: the CLI in P/bin, the public headers in P/include/netquant, and a shared
# libnetquant in P/lib with a CMake package (find_package(netquant) gives netquant::netquant) and a pkg-config
# file (netquant.pc). The shared library holds every area (and the CUDA kernels when they are built); its
# dependencies (OpenMP, OpenBLAS, RE2, zlib, MPI, the CUDA runtime) are linked privately, which is sound because
# the public headers include only the standard library. The build tree keeps using the static library.
# pip builds (scikit-build-core, SKBUILD) install only the Python package and do not come here.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

get_property(_nq_areas GLOBAL PROPERTY NQ_AREAS)
# The areas' objects come in through target_link_libraries; CMake wants a source of the target's own.
file(WRITE "${PROJECT_BINARY_DIR}/nq_shared_library.cpp" "// libnetquant.so: the areas' objects, linked in\n")
add_library(netquant_shared SHARED "${PROJECT_BINARY_DIR}/nq_shared_library.cpp")
target_link_libraries(netquant_shared PRIVATE ${_nq_areas} nq_kernels)
target_include_directories(netquant_shared INTERFACE
  "$<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>" "$<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>")
target_compile_features(netquant_shared INTERFACE cxx_std_17)
# 0.x releases make no ABI promise between minor versions: the soname carries both numbers.
set_target_properties(netquant_shared PROPERTIES
  OUTPUT_NAME netquant EXPORT_NAME netquant
  VERSION "${PROJECT_VERSION}" SOVERSION "${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR}")
add_library(netquant::netquant ALIAS netquant_shared)

# Installed, they keep the directories of the libraries they were linked against outside the system's (the CUDA
# toolkit's cuBLAS, say) as their RUNPATH, so they load without an ld.so.conf entry.
set_target_properties(netquant_cli netquant_shared PROPERTIES INSTALL_RPATH_USE_LINK_PATH ON)
install(TARGETS netquant_cli RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}")
install(TARGETS netquant_shared EXPORT netquantTargets
  LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}" NAMELINK_COMPONENT Unspecified)
install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/netquant" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
  FILES_MATCHING PATTERN "*.h")

set(_nq_cmake_dir "${CMAKE_INSTALL_LIBDIR}/cmake/netquant")
install(EXPORT netquantTargets NAMESPACE netquant:: DESTINATION "${_nq_cmake_dir}")
configure_package_config_file("${CMAKE_CURRENT_LIST_DIR}/netquantConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/netquantConfig.cmake" INSTALL_DESTINATION "${_nq_cmake_dir}")
write_basic_package_version_file("${PROJECT_BINARY_DIR}/netquantConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion)
install(FILES "${PROJECT_BINARY_DIR}/netquantConfig.cmake" "${PROJECT_BINARY_DIR}/netquantConfigVersion.cmake"
  DESTINATION "${_nq_cmake_dir}")

# The pkg-config file finds the prefix from its own place (${pcfiledir}), so it holds for any `--prefix` given at
# install time, DESTDIR, or a prefix moved afterwards; absolute lib/include dirs are written as they are.
set(_nq_pc_dir "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
if(IS_ABSOLUTE "${_nq_pc_dir}")
  set(NQ_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH _nq_up "/nq_prefix/${_nq_pc_dir}" "/nq_prefix")
  string(REGEX REPLACE "/$" "" _nq_up "${_nq_up}")
  set(NQ_PC_PREFIX "\${pcfiledir}/${_nq_up}")
endif()
foreach(_nq_dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${_nq_dir}}")
    set(NQ_PC_${_nq_dir} "${CMAKE_INSTALL_${_nq_dir}}")
  else()
    set(NQ_PC_${_nq_dir} "\${prefix}/${CMAKE_INSTALL_${_nq_dir}}")
  endif()
endforeach()
configure_file("${CMAKE_CURRENT_LIST_DIR}/netquant.pc.in" "${PROJECT_BINARY_DIR}/netquant.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/netquant.pc" DESTINATION "${_nq_pc_dir}")
