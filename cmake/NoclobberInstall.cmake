# Install and export rules: headers, the CMake package (noclobberConfig.cmake with an
# arch-independent version file, so a 32-bit and a 64-bit consumer can share one install) and a
# pkg-config file. Everything goes under share/ and include/: nothing here is per-architecture.
include_guard(GLOBAL)
include(CMakePackageConfigHelpers)

set(NOCLOBBER_INSTALL_CMAKEDIR "${CMAKE_INSTALL_DATADIR}/cmake/noclobber"
    CACHE STRING "Where noclobberConfig.cmake is installed, relative to the prefix")
set(NOCLOBBER_INSTALL_PKGCONFIGDIR "${CMAKE_INSTALL_DATADIR}/pkgconfig"
    CACHE STRING "Where noclobber.pc is installed, relative to the prefix")

install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
        FILES_MATCHING PATTERN "*.hpp")
install(TARGETS noclobber EXPORT noclobberTargets)
install(EXPORT noclobberTargets NAMESPACE noclobber:: DESTINATION "${NOCLOBBER_INSTALL_CMAKEDIR}")
# One export file per component (noclobber-<component>-targets.cmake), which the config loads only
# for the components asked for and only once their library is found. The component table and
# the hiredis finder go with them.
foreach(comp ${NOCLOBBER_COMPONENTS})
  install(TARGETS noclobber_${comp} EXPORT noclobber-${comp}-targets)
  install(EXPORT noclobber-${comp}-targets NAMESPACE noclobber:: DESTINATION "${NOCLOBBER_INSTALL_CMAKEDIR}")
endforeach()
install(FILES "${CMAKE_CURRENT_LIST_DIR}/noclobberComponents.cmake" "${CMAKE_CURRENT_LIST_DIR}/FindNoclobberHiredis.cmake"
        DESTINATION "${NOCLOBBER_INSTALL_CMAKEDIR}")

string(REPLACE ";" " " NOCLOBBER_COMPONENTS_TEXT "${NOCLOBBER_COMPONENTS}")
configure_package_config_file("${CMAKE_CURRENT_LIST_DIR}/noclobberConfig.cmake.in"
                              "${PROJECT_BINARY_DIR}/noclobberConfig.cmake"
                              INSTALL_DESTINATION "${NOCLOBBER_INSTALL_CMAKEDIR}")
# 0.x: a minor release may break the API, so only the same major.minor is compatible.
write_basic_package_version_file("${PROJECT_BINARY_DIR}/noclobberConfigVersion.cmake"
                                 COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES "${PROJECT_BINARY_DIR}/noclobberConfig.cmake" "${PROJECT_BINARY_DIR}/noclobberConfigVersion.cmake"
        DESTINATION "${NOCLOBBER_INSTALL_CMAKEDIR}")

# The .pc file finds its prefix relative to itself (${pcfiledir}), so a relocated install works.
cmake_path(ABSOLUTE_PATH NOCLOBBER_INSTALL_PKGCONFIGDIR BASE_DIRECTORY "/prefix" OUTPUT_VARIABLE _nc_pcdir)
cmake_path(ABSOLUTE_PATH CMAKE_INSTALL_INCLUDEDIR BASE_DIRECTORY "/prefix" OUTPUT_VARIABLE _nc_incdir)
file(RELATIVE_PATH NOCLOBBER_PC_PREFIX "${_nc_pcdir}" "/prefix")
file(RELATIVE_PATH NOCLOBBER_PC_INCLUDEDIR "/prefix" "${_nc_incdir}")
configure_file("${CMAKE_CURRENT_LIST_DIR}/noclobber.pc.in" "${PROJECT_BINARY_DIR}/noclobber.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/noclobber.pc" DESTINATION "${NOCLOBBER_INSTALL_PKGCONFIGDIR}")

install(FILES "${PROJECT_SOURCE_DIR}/LICENSE" DESTINATION "${CMAKE_INSTALL_DOCDIR}")
