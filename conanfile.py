# Conan 2 recipe for noclobber, a header-only library: one package for every configuration.
# Modelled on conan-center-index's header-only template (docs/package_templates/header_only).
# From a checkout:  conan create . --build=missing -s compiler.cppstd=20
#   (builds and runs test_package/; C++20 must be asked for: Conan's default profile for g++ 12
#   says gnu17, which validate() refuses)
# Adapters: -o "noclobber/*:with_sqlite=True" ... pulls the adapter's client library and declares
# the CMake target noclobber::sqlite (see _adapter_components).
import os
import re

from conan import ConanFile
from conan.errors import ConanInvalidConfiguration
from conan.tools.build import check_min_cppstd
from conan.tools.files import copy, load
from conan.tools.layout import basic_layout
from conan.tools.scm import Version

required_conan_version = ">=2.0"


class NoclobberConan(ConanFile):
    name = "noclobber"
    # version: read from include/noclobber/version.hpp by set_version(), the one version source.
    description = "Header-only C++20 toolkit that stops lost updates"
    license = "MIT"
    url = "https://github.com/noclobber/noclobber"
    homepage = "https://github.com/noclobber/noclobber"
    topics = ("concurrency", "optimistic-concurrency", "compare-and-swap", "lost-update", "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    exports = "include/noclobber/version.hpp"
    exports_sources = "include/*", "LICENSE"
    no_copy_source = True

    # One option per adapter component: component -> (Conan requirement, its CMake-side reference).
    # The same components as cmake/noclobberComponents.cmake (scripts/check_packaging.py compares
    # them). The headers are packaged whatever the options say; an option adds the library and the
    # noclobber::<component> target.
    _adapter_components = {
        "json": ("nlohmann_json/[>=3.11 <4]", "nlohmann_json::nlohmann_json"),
        "sqlite": ("sqlite3/[>=3.35 <4]", "sqlite3::sqlite3"),
        "postgres": ("libpq/[>=14 <18]", "libpq::libpq"),
        "redis": ("hiredis/[>=1.0 <2]", "hiredis::hiredis"),
        "etcd": ("libcurl/[>=7.80 <9]", "libcurl::libcurl"),
        "http": ("libcurl/[>=7.80 <9]", "libcurl::libcurl"),
        "s3": ("libcurl/[>=7.85 <9]", "libcurl::libcurl"),
        "asio": ("boost/[>=1.81 <2]", "boost::headers"),
        "benchmark": ("benchmark/[>=1.7 <2]", "benchmark::benchmark"),
        "fmt": ("fmt/[>=9 <12]", "fmt::fmt"),
    }
    # Components that carry another's library too (cmake/noclobberComponents.cmake's uses rows):
    # etcd decodes its gateway's JSON with nlohmann/json.
    _component_uses = {"etcd": ["json"]}
    options = {f"with_{c}": [True, False] for c in _adapter_components}
    default_options = {f"with_{c}": False for c in _adapter_components}

    @property
    def _min_cppstd(self):
        return 20

    @property
    def _compilers_minimum_version(self):
        # The compilers CI builds with; older ones are not tested.
        return {"gcc": "12", "clang": "14"}

    def set_version(self):
        header = load(self, os.path.join(self.recipe_folder, "include", "noclobber", "version.hpp"))
        self.version = re.search(r'#define NOCLOBBER_VERSION_STRING "([^"]+)"', header).group(1)

    def configure(self):
        if self.options.with_asio:
            self.options["boost"].header_only = True

    def layout(self):
        basic_layout(self, src_folder=".")

    def requirements(self):
        # Our headers include the libraries' headers: consumers need both.
        wanted = {}  # package -> the strictest range asked for (s3 needs a newer libcurl)
        for comp, (ref, _) in self._adapter_components.items():
            if self._component_on(comp):
                name = ref.split("/")[0]
                wanted[name] = max(wanted.get(name, ref), ref)
        for ref in sorted(wanted.values()):
            self.requires(ref, transitive_headers=True, transitive_libs=True)

    def _component_on(self, comp):
        """with_<comp>, or a component that is on uses it."""
        if self.options.get_safe(f"with_{comp}"):
            return True
        return any(comp in used and self.options.get_safe(f"with_{user}")
                   for user, used in self._component_uses.items())

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
        # Targets: noclobber::noclobber (the core, component "_core") and noclobber::<adapter> for
        # each with_<adapter> option, as the CMake install gives them; the root target (CMakeDeps
        # makes one per package) is named apart so that it does not collide with the core's.
        self.cpp_info.set_property("cmake_file_name", "noclobber")
        self.cpp_info.set_property("cmake_target_name", "noclobber::all")
        self.cpp_info.set_property("pkg_config_name", "noclobber-all")
        core = self.cpp_info.components["_core"]
        core.set_property("cmake_target_name", "noclobber::noclobber")
        core.set_property("pkg_config_name", "noclobber")
        core.bindirs = []
        core.libdirs = []
        if self.settings.os in ["Linux", "FreeBSD"]:
            core.system_libs.append("pthread")
        for comp, (_, dependency) in self._adapter_components.items():
            if not self._component_on(comp):
                continue
            c = self.cpp_info.components[comp]
            c.set_property("cmake_target_name", f"noclobber::{comp}")
            c.set_property("pkg_config_name", f"noclobber-{comp}")
            c.bindirs = []
            c.libdirs = []
            c.requires = ["_core", dependency] + self._component_uses.get(comp, [])
