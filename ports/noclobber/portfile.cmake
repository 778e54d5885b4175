# vcpkg overlay port for noclobber (header-only), modelled on vcpkg's own header-only ports.
#
#   vcpkg install noclobber --overlay-ports=<checkout>/ports
#
# It builds from the checkout it lives in (ports/noclobber/ -> the repository root). For a
# registry, replace the next line with vcpkg_from_github(OUT_SOURCE_PATH SOURCE_PATH
# REPO noclobber/noclobber REF "v${VERSION}" SHA512 <hash of the release archive> HEAD_REF main).
get_filename_component(SOURCE_PATH "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)

set(VCPKG_BUILD_TYPE release) # header-only: no debug variant

vcpkg_cmake_configure(
    SOURCE_PATH "${SOURCE_PATH}"
    OPTIONS
        -DNOCLOBBER_BUILD_TESTS=OFF
        -DNOCLOBBER_BUILD_BENCHMARKS=OFF
        -DNOCLOBBER_BUILD_EXAMPLES=OFF
        -DNOCLOBBER_INSTALL=ON
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(PACKAGE_NAME noclobber CONFIG_PATH share/cmake/noclobber)
vcpkg_fixup_pkgconfig()

file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/lib" "${CURRENT_PACKAGES_DIR}/debug")
# The LICENSE that `cmake --install` puts in share/doc/noclobber is replaced by vcpkg's copyright file.
file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/share/doc")

file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
