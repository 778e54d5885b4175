// The race report as HTML (race_harness/html.hpp), checked structurally: the timeline's SVG is
// parsed (every tag closed), its lanes, marks, lost marks and links counted against the report,
// the hover text of a lost write names its overwriter, text is escaped, a 64 × 100 run stays
// within size, the version chain collapses quiet stretches, and write_html writes the page.
// scripts/check_html_chromium.sh renders the same pages in a browser where chromium is installed.
#include <noclobber/memory_store.hpp>
#include <noclobber/race_harness.hpp>

#include <catch2/catch.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace nc = noclobber;

namespace {

using store_t = nc::memory_store<std::string, std::string>;

struct element {
  std::string name;
  std::map<std::string, std::string> attrs;
  std::string title;  // the text of a <title> child
  std::string text;   // its text, or its <text> child's
  [[nodiscard]] bool has_class(const std::string& c) const {
    auto it = attrs.find("class");
    if (it == attrs.end()) return false;
    std::istringstream words(it->second);
    for (std::string w; words >> w;)
      if (w == c) return true;
    return false;
  }
};

// A small XML reader for the SVG the page embeds: tags with quoted attributes, self-closing
// tags, text. Throws when a tag is left open or closed out of order.
std::vector<element> parse_svg(const std::string& page, const std::string& open_tag) {
  const auto begin = page.find(open_tag);
  if (begin == std::string::npos) throw std::runtime_error("no " + open_tag);
  const auto end = page.find("</svg>", begin);
  if (end == std::string::npos) throw std::runtime_error("svg not closed");
  const std::string s = page.substr(begin, end + 6 - begin);
  std::vector<element> all;
  std::vector<std::size_t> open;  // indices into all
  std::size_t i = 0;
  while (i < s.size()) {
    if (s[i] != '<') {
      const auto next = s.find('<', i);
      const std::string text = s.substr(i, next - i);
      if (!open.empty()) {
        element& e = all[open.back()];
        if (e.name == "title") all[open[open.size() - 2]].title += text;
        if (e.name == "text") {
          e.text += text;
          if (open.size() >= 2) all[open[open.size() - 2]].text += text;  // a mark's label
        }
      }
      i = next;
      continue;
    }
    const auto close = s.find('>', i);
    if (close == std::string::npos) throw std::runtime_error("tag not closed");
    std::string tag = s.substr(i + 1, close - i - 1);
    i = close + 1;
    if (tag[0] == '/') {
      const std::string name = tag.substr(1);
      if (open.empty() || all[open.back()].name != name)
        throw std::runtime_error("unbalanced </" + name + ">");
      open.pop_back();
      continue;
    }
    const bool self_closing = tag.back() == '/';
    if (self_closing) tag.pop_back();
    element e;
    std::size_t p = tag.find(' ');
    e.name = tag.substr(0, p);
    while (p != std::string::npos && p < tag.size()) {
      while (p < tag.size() && tag[p] == ' ') ++p;
      const auto eq = tag.find('=', p);
      if (eq == std::string::npos) break;
      const auto q1 = tag.find('"', eq);
      const auto q2 = tag.find('"', q1 + 1);
      if (q1 != eq + 1 || q2 == std::string::npos) throw std::runtime_error("bad attribute in <" + tag + ">");
      e.attrs[tag.substr(p, eq - p)] = tag.substr(q1 + 1, q2 - q1 - 1);
      p = q2 + 1;
    }
    all.push_back(std::move(e));
    if (!self_closing) open.push_back(all.size() - 1);
  }
  if (!open.empty()) throw std::runtime_error("<" + all[open.back()].name + "> left open");
  return all;
}

std::size_t count_class(const std::vector<element>& es, const std::string& name, const std::string& cls) {
  std::size_t n = 0;
  for (const auto& e : es) n += e.name == name && e.has_class(cls);
  return n;
}

const element* by_id(const std::vector<element>& es, const std::string& id) {
  for (const auto& e : es) {
    auto it = e.attrs.find("id");
    if (it != e.attrs.end() && it->second == id) return &e;
  }
  return nullptr;
}

void check_timeline(const nc::race_report& r, std::size_t lanes) {
  const std::string page = nc::to_html(r);
  const auto svg = parse_svg(page, "<svg id=\"timeline\"");
  REQUIRE(count_class(svg, "g", "lane") == lanes);
  REQUIRE(count_class(svg, "g", "m") == r.history.reads.size() + r.history.writes.size());
  REQUIRE(count_class(svg, "g", "read") == r.history.reads.size());
  REQUIRE(count_class(svg, "g", "lost") == r.lost());
  std::size_t links = 0;
  for (const auto& e : svg) {
    if (e.name != "line" || !e.has_class("lostlink")) continue;
    ++links;
    const element* from = by_id(svg, e.attrs.at("data-from"));
    const element* to = by_id(svg, e.attrs.at("data-to"));
    REQUIRE(from != nullptr);
    REQUIRE(to != nullptr);
    REQUIRE(from->has_class("lost"));
    REQUIRE(to->has_class("write"));
  }
  std::size_t named = 0;
  for (const auto& l : r.check.lost) named += l.overwritten_by.writer != 0;
  REQUIRE(links == std::min<std::size_t>(named, nc::detail::html_max_links));
  for (const auto& e : svg) {
    if (!e.has_class("lost")) continue;
    REQUIRE_THAT(e.title, Catch::Contains("LOST: overwritten by W"));
    REQUIRE_THAT(e.text, Catch::Contains("lost"));
  }
}

}  // namespace

TEST_CASE("html: the timeline of a forced naive run", "[race_harness][html][concurrency]") {
  store_t store;
  nc::race_options_for<store_t> o;
  o.writers = 4;
  const auto r = nc::run_race(store, nc::naive_strategy{}, o);
  REQUIRE(r.lost() == 3);
  check_timeline(r, 4);
  const std::string page = nc::to_html(r);
  REQUIRE_THAT(page, Catch::StartsWith("<!DOCTYPE html>") && Catch::Contains("LOST UPDATES: 3") &&
                         Catch::Contains("replay: mode=forced writers=4"));
  // Each lost write's hover text names the one write in the final state as its overwriter.
  const auto svg = parse_svg(page, "<svg id=\"timeline\"");
  const std::string survivor =
      "overwritten by W" + std::to_string(nc::writer_of(r.history.final_versions.at(0)));
  for (const auto& e : svg)
    if (e.has_class("lost")) CHECK_THAT(e.title, Catch::Contains(survivor));
  // The chain: v0 → the survivor, three lost writes hanging under v0.
  const auto chain = parse_svg(page, "<svg class=\"chain\"");
  REQUIRE(count_class(chain, "g", "version") == 2 + 3);
  REQUIRE(count_class(chain, "g", "lost") == 3);
}

TEST_CASE("html: the timeline of an explore run and of its shrunk schedule",
          "[race_harness][html][concurrency]") {
  store_t store;
  nc::race_options_for<store_t> o;
  o.mode = nc::race_mode::explore;
  o.writers = 16;
  o.ops_per_writer = 5;
  o.seed = 7;
  o.stall_timeout = std::chrono::seconds(5);  // naive never blocks: only a descheduled thread could stall
  const auto r = nc::run_race(store, nc::naive_strategy{}, o);
  REQUIRE(r.lost() > 0);
  check_timeline(r, 16);
  const auto shrunk = nc::shrink_race(store, nc::naive_strategy{}, o, r);
  check_timeline(shrunk.shrunk, 2);
  REQUIRE_THAT(nc::to_html(shrunk.shrunk), Catch::Contains("priority="));
}

TEST_CASE("html: 64 writers × 100 ops stay within size, every mark present",
          "[race_harness][html][concurrency]") {
  store_t store;
  nc::race_options_for<store_t> o;
  o.writers = 64;
  o.ops_per_writer = 100;
  o.keys = {"a", "b", "c", "d"};
  const auto r = nc::run_race(store, nc::naive_strategy{}, o);
  REQUIRE(r.lost() >= 63);
  REQUIRE(r.history.writes.size() == 6400);
  check_timeline(r, 64);
  const std::string page = nc::to_html(r);
  CHECK(page.size() < 8u * 1024 * 1024);
  // Zoom starts fitted: the timeline is at most ~1400 px wide until the reader zooms in.
  const auto svg = parse_svg(page, "<svg id=\"timeline\"");
  REQUIRE(std::stod(svg.front().attrs.at("width")) < 1500);
  REQUIRE(page.find("id=\"zoom-in\"") != std::string::npos);
  REQUIRE(page.find("id=\"only-lost\"") != std::string::npos);
}

TEST_CASE("html: a clean run's long chain collapses its quiet stretch", "[race_harness][html][concurrency]") {
  store_t store;
  nc::race_options_for<store_t> o;
  o.writers = 8;
  o.ops_per_writer = 10;
  const auto r = nc::run_race(store, nc::cas_strategy{}, o);
  REQUIRE(r.ok());
  const std::string page = nc::to_html(r);
  REQUIRE_THAT(page, Catch::Contains("no lost update"));
  const auto chain = parse_svg(page, "<svg class=\"chain\"");
  std::size_t shown = count_class(chain, "g", "version"), hidden = 0;
  for (const auto& e : chain) {
    if (e.has_class("gap")) hidden += std::stoul(e.text.substr(e.text.find(' ') + 1));
  }
  REQUIRE(shown == 4);                // v0, v1 … v79, v80
  REQUIRE(shown + hidden == 80 + 1);  // every applied write and the start
}

TEST_CASE("html: names are escaped", "[race_harness][html][concurrency]") {
  store_t store;
  nc::race_options_for<store_t> o;
  o.writers = 2;
  o.keys = {"a<b&\"c\""};
  o.store_name = "<script>alert(1)</script>";
  const auto r = nc::run_race(store, nc::naive_strategy{}, o);
  const std::string page = nc::to_html(r);
  REQUIRE(page.find("<script>alert") == std::string::npos);
  REQUIRE(page.find("&lt;script&gt;alert(1)&lt;/script&gt;") != std::string::npos);
  REQUIRE(page.find("a&lt;b&amp;&quot;c&quot;") != std::string::npos);
  (void)parse_svg(page, "<svg id=\"timeline\"");
  (void)parse_svg(page, "<svg class=\"chain\"");
}

TEST_CASE("html: write_html writes the page and says where", "[race_harness][html][concurrency]") {
  store_t store;
  nc::race_options_for<store_t> o;
  o.writers = 3;
  o.store_name = "memory store/1";
  const auto r = nc::run_race(store, nc::naive_strategy{}, o);
  const auto dir =
      std::filesystem::temp_directory_path() / ("noclobber_html_test_" + std::to_string(::getpid()));
  ::setenv("NOCLOBBER_RACE_HTML_DIR", dir.c_str(), 1);
  const auto path = nc::write_html(r);
  ::unsetenv("NOCLOBBER_RACE_HTML_DIR");
  REQUIRE(path.parent_path() == dir);
  REQUIRE_THAT(path.filename().string(), Catch::StartsWith("noclobber_race_memory-store-1_strategy_"));
  std::ifstream f(path, std::ios::binary);
  const std::string content((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  REQUIRE(content == nc::to_html(r));
  const auto second = nc::write_html(r);  // a fresh name each time, in the temp folder
  REQUIRE(second != path);
  REQUIRE(second.parent_path() == std::filesystem::temp_directory_path());
  std::filesystem::remove(second);
  std::filesystem::remove_all(dir);
  REQUIRE_THROWS_WITH(nc::write_html(r, "/nonexistent-dir/x.html"),
                      Catch::Contains("/nonexistent-dir/x.html"));
}
