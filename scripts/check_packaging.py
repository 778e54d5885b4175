#!/usr/bin/env python3
"""Checks the packaging without Conan or vcpkg installed (neither can be installed in CI).

  * the files exist: conanfile.py, test_package/, ports/noclobber/{vcpkg.json,portfile.cmake,usage}
  * conanfile.py is valid Python, declares package_type = "header-library" and the recipe idioms
    of conan-center's header-only recipes (no_copy_source, package_id clearing its info)
  * ports/noclobber/vcpkg.json is valid JSON with the vcpkg-cmake host dependencies
  * one version source, include/noclobber/version.hpp (its macros agree with its string):
    CMakeLists.txt and conanfile.py read it; vcpkg.json, the README's and docs/building.md's
    FetchContent tag (v<version>), Conan reference (noclobber/<version>) and find_package version
    (<major>.<minor>) repeat it and must agree
  * the components: those of cmake/noclobberComponents.cmake whose header exists (an adapter
    added later, like s3, joins by its header appearing) are exactly the Conan options
    with_<component> of conanfile.py and the vcpkg features of ports/noclobber/vcpkg.json, and
    ports/noclobber/usage names each
"""
import ast
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
errors = []


def fail(msg):
    errors.append(msg)


def read(rel):
    p = ROOT / rel
    if not p.is_file():
        fail(f"{rel}: missing")
        return ""
    return p.read_text()


for rel in ["LICENSE", "conanfile.py", "test_package/conanfile.py", "test_package/CMakeLists.txt",
            "test_package/test_package.cpp", "ports/noclobber/vcpkg.json", "ports/noclobber/portfile.cmake",
            "ports/noclobber/usage", "cmake/noclobberConfig.cmake.in", "cmake/noclobber.pc.in"]:
    read(rel)

versions = {}

cmakelists = read("CMakeLists.txt")
if not re.search(r'file\(STRINGS\s+"\$\{CMAKE_CURRENT_SOURCE_DIR\}/include/noclobber/version\.hpp"', cmakelists) or \
        not re.search(r"project\(\s*noclobber\s+VERSION\s+\$\{CMAKE_MATCH_1\}", cmakelists):
    fail("CMakeLists.txt: project() must take its VERSION from include/noclobber/version.hpp")

header = read("include/noclobber/version.hpp")
m = re.search(r'#define\s+NOCLOBBER_VERSION_STRING\s+"([^"]+)"', header)
versions["version.hpp NOCLOBBER_VERSION_STRING"] = m.group(1) if m else None
parts = [re.search(rf"#define\s+NOCLOBBER_VERSION_{p}\s+(\d+)", header) for p in ("MAJOR", "MINOR", "PATCH")]
versions["version.hpp MAJOR.MINOR.PATCH"] = ".".join(p.group(1) for p in parts) if all(parts) else None


def conan_attributes(text):
    """Class-level string attributes of the ConanFile subclass, and its method names."""
    tree = ast.parse(text, "conanfile.py")
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            attrs, methods = {}, set()
            for item in node.body:
                if isinstance(item, ast.Assign) and isinstance(item.value, ast.Constant):
                    for t in item.targets:
                        if isinstance(t, ast.Name):
                            attrs[t.id] = item.value.value
                elif isinstance(item, ast.FunctionDef):
                    methods.add(item.name)
            return attrs, methods
    return {}, set()


for rel in ("conanfile.py", "test_package/conanfile.py"):
    text = read(rel)
    if not text:
        continue
    try:
        attrs, methods = conan_attributes(text)
    except SyntaxError as e:
        fail(f"{rel}: not valid Python: {e}")
        continue
    if rel == "conanfile.py":
        if "version" in attrs:
            fail("conanfile.py: a literal version attribute; set_version() reads include/noclobber/version.hpp")
        if "set_version" not in methods or "version.hpp" not in text:
            fail("conanfile.py: no set_version() reading include/noclobber/version.hpp")
        if attrs.get("exports") != "include/noclobber/version.hpp":
            fail('conanfile.py: exports = "include/noclobber/version.hpp" missing (set_version() reads it)')
        if attrs.get("package_type") != "header-library":
            fail(f'conanfile.py: package_type is {attrs.get("package_type")!r}, want "header-library"')
        if attrs.get("no_copy_source") is not True:
            fail("conanfile.py: no_copy_source = True missing (header-only recipes copy nothing)")
        for needed in ("package_id", "package", "package_info", "layout"):
            if needed not in methods:
                fail(f"conanfile.py: no {needed}() method")
        if "self.info.clear()" not in text:
            fail("conanfile.py: package_id() should call self.info.clear() (one package for all settings)")
    elif "test" not in methods:
        fail(f"{rel}: no test() method")

try:
    port = json.loads(read("ports/noclobber/vcpkg.json") or "{}")
except json.JSONDecodeError as e:
    fail(f"ports/noclobber/vcpkg.json: not valid JSON: {e}")
    port = {}
versions["vcpkg.json version"] = port.get("version")
if port and port.get("name") != "noclobber":
    fail(f'ports/noclobber/vcpkg.json: name is {port.get("name")!r}, want "noclobber"')
deps = {d["name"] if isinstance(d, dict) else d: d for d in port.get("dependencies", [])}
for host_dep in ("vcpkg-cmake", "vcpkg-cmake-config"):
    if port and not (isinstance(deps.get(host_dep), dict) and deps[host_dep].get("host")):
        fail(f"ports/noclobber/vcpkg.json: {host_dep} must be a host dependency")
portfile = read("ports/noclobber/portfile.cmake")
for call in ("vcpkg_cmake_configure", "vcpkg_cmake_install", "vcpkg_cmake_config_fixup", "vcpkg_install_copyright"):
    if portfile and call not in portfile:
        fail(f"ports/noclobber/portfile.cmake: no {call}()")

# The places that repeat the version for users: each must name the current one.
header_version = versions["version.hpp NOCLOBBER_VERSION_STRING"] or "?"
major_minor = ".".join(header_version.split(".")[:2])
for rel in ("README.md", "docs/building.md", "tests/cmake_consumer/fetchcontent/CMakeLists.txt"):
    text = read(rel)
    for i, m in enumerate(re.finditer(r"GIT_TAG\W+v([0-9][0-9.]*)", text)):
        versions[f"{rel} GIT_TAG #{i + 1}"] = m.group(1)
    for i, m in enumerate(re.finditer(r"noclobber/([0-9]+\.[0-9]+\.[0-9]+)", text)):
        versions[f"{rel} noclobber/X.Y.Z #{i + 1}"] = m.group(1)
    for m in re.finditer(r"find_package\(noclobber ([0-9][0-9.]*)", text):
        if m.group(1) != major_minor:
            fail(f"{rel}: find_package(noclobber {m.group(1)} ...), but the version is {header_version}")


def cmake_components():
    """The components of cmake/noclobberComponents.cmake whose first header exists."""
    text = read("cmake/noclobberComponents.cmake")
    m = re.search(r"set\(noclobber_known_components ([^)]*)\)", text)
    if not m:
        fail("cmake/noclobberComponents.cmake: no noclobber_known_components")
        return set()
    present = set()
    for comp in m.group(1).split():
        h = re.search(rf"set\(noclobber_component_headers_{comp}\s+([^\s)]+)", text)
        t = re.search(rf"set\(noclobber_component_target_{comp}\s+(\S+)\)", text)
        f = re.search(rf"set\(noclobber_component_find_{comp}\s+[^)]+\)", text)
        if not (h and t and f):
            fail(f"cmake/noclobberComponents.cmake: component {comp} lacks its headers, find or target row")
            continue
        if (ROOT / "include" / "noclobber" / h.group(1)).is_file():
            present.add(comp)
    return present


components = cmake_components()
conan_text = read("conanfile.py")
m = re.search(r"_adapter_components = \{(.*?)\n    \}", conan_text, re.S)
conan_components = set(re.findall(r'^\s*"([a-z0-9_]+)": \(', m.group(1), re.M)) if m else set()
if conan_components != components:
    fail(f"conanfile.py _adapter_components {sorted(conan_components)} != CMake components {sorted(components)} "
         "(cmake/noclobberComponents.cmake rows whose header exists): add or remove the option")
vcpkg_features = set(port.get("features", {}))
if vcpkg_features != components:
    fail(f"ports/noclobber/vcpkg.json features {sorted(vcpkg_features)} != CMake components {sorted(components)}")
usage = read("ports/noclobber/usage")
for comp in sorted(components):
    if comp not in usage:
        fail(f"ports/noclobber/usage: component {comp} not named")

distinct = set(versions.values())
if None in distinct or len(distinct) != 1:
    fail("versions disagree: " + ", ".join(f"{k} = {v}" for k, v in versions.items()))

for e in errors:
    print(f"check_packaging.py: {e}", file=sys.stderr)
if not errors:
    print(f"check_packaging.py: packaging files present, version {distinct.pop()} everywhere, "
          f"components {' '.join(sorted(components))} in CMake, Conan and vcpkg")
sys.exit(1 if errors else 0)
