#!/usr/bin/env python3
"""Checks the packaging without Conan or vcpkg installed (neither can be installed in CI).

  * the files exist: conanfile.py, test_package/, ports/noclobber/{vcpkg.json,portfile.cmake,usage}
  * conanfile.py is valid Python, declares package_type = "header-library" and the recipe idioms
    of conan-center's header-only recipes (no_copy_source, package_id clearing its info)
  * ports/noclobber/vcpkg.json is valid JSON with the vcpkg-cmake host dependencies
  * one version everywhere: CMakeLists.txt project(), include/noclobber/version.hpp,
    conanfile.py, vcpkg.json (and the version header's macros agree with its string)
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

m = re.search(r"project\(\s*noclobber\s+VERSION\s+([0-9.]+)", read("CMakeLists.txt"))
versions["CMakeLists.txt project()"] = m.group(1) if m else None

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
        versions["conanfile.py version"] = attrs.get("version")
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

distinct = set(versions.values())
if None in distinct or len(distinct) != 1:
    fail("versions disagree: " + ", ".join(f"{k} = {v}" for k, v in versions.items()))

for e in errors:
    print(f"check_packaging.py: {e}", file=sys.stderr)
if not errors:
    print(f"check_packaging.py: packaging files present, version {distinct.pop()} everywhere")
sys.exit(1 if errors else 0)
