# Conan 2 recipe for noclobber, a header-only library: one package for every configuration.
# Modelled on conan-center-index's header-only template (docs/package_templates/header_only).
# From a checkout:  conan create . --build=missing   (builds and runs test_package/)
import os

from conan import ConanFile
from conan.errors import ConanInvalidConfiguration
from conan.tools.build import check_min_cppstd
from conan.tools.files import copy
from conan.tools.layout import basic_layout
from conan.tools.scm import Version

required_conan_version = ">=2.0"


class NoclobberConan(ConanFile):
    name = "noclobber"
    version = "0.1.0"
    description = "Header-only C++20 toolkit that stops lost updates"
    license = "MIT"
    url = "https://github.com/noclobber/noclobber"
    homepage = "https://github.com/noclobber/noclobber"
    topics = ("concurrency", "optimistic-concurrency", "compare-and-swap", "lost-update", "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    exports_sources = "include/*", "LICENSE"
    no_copy_source = True

    @property
    def _min_cppstd(self):
        return 20

    @property
    def _compilers_minimum_version(self):
        # The compilers CI builds with; older ones are not tested.
        return {"gcc": "12", "clang": "14"}

    def layout(self):
        basic_layout(self, src_folder=".")

    def package_id(self):
        self.info.clear()

    def validate(self):
        if self.settings.compiler.get_safe("cppstd"):
            check_min_cppstd(self, self._min_cppstd)
        minimum_version = self._compilers_minimum_version.get(str(self.settings.compiler), False)
        if minimum_version and Version(self.settings.compiler.version) < minimum_version:
            raise ConanInvalidConfiguration(
                f"{self.ref} requires C++{self._min_cppstd}, which your compiler does not support."
            )

    def build(self):
        pass

    def package(self):
        copy(self, "LICENSE", self.source_folder, os.path.join(self.package_folder, "licenses"))
        copy(
            self,
            "*.hpp",
            os.path.join(self.source_folder, "include"),
            os.path.join(self.package_folder, "include"),
        )

    def package_info(self):
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        self.cpp_info.set_property("cmake_file_name", "noclobber")
        self.cpp_info.set_property("cmake_target_name", "noclobber::noclobber")
        self.cpp_info.set_property("pkg_config_name", "noclobber")
        if self.settings.os in ["Linux", "FreeBSD"]:
            self.cpp_info.system_libs.append("pthread")
