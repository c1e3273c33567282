# ctest Install.ConsumerProject: installs this build into a fresh prefix, then checks the installed tree as a user
# meets it — the CLI runs, and a project outside the source tree (tests/install/consumer) builds against the
# library through find_package(netquant) and through pkg-config, and its oracle checks pass.
# cmake -DBUILD_DIR=... -DSOURCE_DIR=... -DWORK_DIR=... -DEXPECT_VERSION=... -DCXX=... -P check_install.cmake
foreach(var BUILD_DIR SOURCE_DIR WORK_DIR EXPECT_VERSION CXX)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_install.cmake needs -D${var}=...")
  endif()
endforeach()

function(run what)  # run WHAT COMMAND...: the command must succeed; its output is shown when it does not
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${ARGN}\n${out}\n${err}")
  endif()
  set(run_output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
run("cmake --install" "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}")

file(GLOB_RECURSE pc_files "${prefix}/*/netquant.pc")
file(GLOB_RECURSE configs "${prefix}/*/netquantConfig.cmake")
foreach(expected "${prefix}/bin/netquant" "${prefix}/include/netquant/netquant.h"
                 "${prefix}/include/netquant/quantize.h")
  if(NOT EXISTS "${expected}")
    message(FATAL_ERROR "the install has no ${expected}")
  endif()
endforeach()
list(LENGTH pc_files n_pc)
list(LENGTH configs n_configs)
if(NOT n_pc EQUAL 1 OR NOT n_configs EQUAL 1)
  message(FATAL_ERROR "expected one netquant.pc and one netquantConfig.cmake, found: ${pc_files} ${configs}")
endif()
# Nothing of the build tree or the test suite belongs in the prefix.
file(GLOB_RECURSE installed RELATIVE "${prefix}" "${prefix}/*")
foreach(f ${installed})
  if(NOT f MATCHES "^(bin/netquant|include/netquant/[a-z_0-9]+\\.h|lib[^/]*/([^/]+/)?(libnetquant\\.so[.0-9]*|cmake/netquant/netquant[A-Za-z-]*\\.cmake|pkgconfig/netquant\\.pc))$")
    message(FATAL_ERROR "unexpected file in the install: ${f}")
  endif()
endforeach()

# The installed CLI (linked statically against the library) runs from the prefix.
run("netquant --version" "${prefix}/bin/netquant" --version)
if(NOT run_output MATCHES "^netquant ${EXPECT_VERSION} ")
  message(FATAL_ERROR "the installed CLI says '${run_output}', expected netquant ${EXPECT_VERSION}")
endif()

# find_package(netquant) from a project outside the tree.
set(consumer "${SOURCE_DIR}/tests/install/consumer")
run("configuring the consumer" "${CMAKE_COMMAND}" -S "${consumer}" -B "${WORK_DIR}/consumer-build"
    "-DCMAKE_PREFIX_PATH=${prefix}" "-DNQ_EXPECT_VERSION=${EXPECT_VERSION}" "-DCMAKE_CXX_COMPILER=${CXX}"
    -DCMAKE_BUILD_TYPE=Release)
run("building the consumer" "${CMAKE_COMMAND}" --build "${WORK_DIR}/consumer-build")
run("the consumer (find_package)" "${WORK_DIR}/consumer-build/consumer")
message(STATUS "${run_output}")

# pkg-config: the flags it gives compile and link the same program.
find_program(PKG_CONFIG NAMES pkg-config pkgconf REQUIRED)
get_filename_component(pc_dir "${pc_files}" DIRECTORY)
set(ENV{PKG_CONFIG_PATH} "${pc_dir}")
run("pkg-config" "${PKG_CONFIG}" --cflags --libs netquant)
string(STRIP "${run_output}" flags)
separate_arguments(flags UNIX_COMMAND "${flags}")
run("compiling the consumer with pkg-config's flags" "${CXX}" -O1 "-DNQ_EXPECT_VERSION=\"${EXPECT_VERSION}\""
    "${consumer}/main.cpp" ${flags} -o "${WORK_DIR}/consumer-pc")
get_filename_component(lib_dir "${pc_dir}" DIRECTORY)
run("the consumer (pkg-config)" "${CMAKE_COMMAND}" -E env "LD_LIBRARY_PATH=${lib_dir}" "${WORK_DIR}/consumer-pc")
file(REMOVE_RECURSE "${WORK_DIR}")
