# The component targets in the build tree (add_subdirectory, FetchContent, noclobber's own build):
# noclobber::<component> for each row of cmake/noclobberComponents.cmake whose header exists.
#
# Each component's library is looked for here, quietly. A component is created even when its
# library is missing (so that it is exported and installed all the same); linking it then fails
# with CMake's "target <library target> was not found", and configure says why in a status line.
# List components in NOCLOBBER_REQUIRE_COMPONENTS to make a missing library or an unknown name a
# configure error instead.
include(${CMAKE_CURRENT_LIST_DIR}/noclobberComponents.cmake)

set(NOCLOBBER_REQUIRE_COMPONENTS "" CACHE STRING
    "noclobber components whose library must be found at configure time (e.g. 'sqlite;postgres')")

set(NOCLOBBER_COMPONENTS "")
foreach(comp ${noclobber_known_components})
  list(GET noclobber_component_headers_${comp} 0 first_header)
  if(EXISTS "${PROJECT_SOURCE_DIR}/include/noclobber/${first_header}")
    list(APPEND NOCLOBBER_COMPONENTS ${comp})
  endif()
endforeach()

foreach(comp ${NOCLOBBER_REQUIRE_COMPONENTS})
  if(NOT comp IN_LIST NOCLOBBER_COMPONENTS)
    message(FATAL_ERROR "NOCLOBBER_REQUIRE_COMPONENTS: noclobber has no component '${comp}'; "
                        "it has: ${NOCLOBBER_COMPONENTS}")
  endif()
endforeach()

foreach(comp ${NOCLOBBER_COMPONENTS})
  noclobber_find_component_library(${comp} QUIET)
  if(NOT noclobber_component_library_found)
    if(comp IN_LIST NOCLOBBER_REQUIRE_COMPONENTS)
      message(FATAL_ERROR "noclobber component ${comp}: ${noclobber_component_target_${comp}} not found "
                          "(find_package(${noclobber_component_find_${comp}}); Debian: "
                          "${noclobber_component_debian_${comp}})")
    endif()
    message(STATUS "noclobber: component ${comp} unusable here: ${noclobber_component_target_${comp}} not "
                   "found (Debian: ${noclobber_component_debian_${comp}})")
  endif()
  add_library(noclobber_${comp} INTERFACE)
  add_library(noclobber::${comp} ALIAS noclobber_${comp})
  set_target_properties(noclobber_${comp} PROPERTIES EXPORT_NAME ${comp})
  target_link_libraries(noclobber_${comp} INTERFACE noclobber ${noclobber_component_target_${comp}})
  foreach(used ${noclobber_component_uses_${comp}})  # defined above: listed earlier in the table
    target_link_libraries(noclobber_${comp} INTERFACE noclobber_${used})
  endforeach()
endforeach()
