// noclobber/race_harness/html.hpp — a race report as a self-contained HTML page with an SVG
// timeline.
//
// Overview
// --------
//   to_html(report)           the page, as a string: no external file, font or script
//   write_html(report, path)  writes it; write_html(report) picks a fresh file in the temp folder
//                             and returns its path (the Catch2 assertion and the demo do this
//                             when a run loses)
//
// The page shows:
//   * the counts and the replay line (race_report::to_text()'s head);
//   * a timeline: one lane per writer, logical ticks left to right (compressed: only ticks at
//     which something started or ended take room), each read and write attempt a mark from its
//     invoke to its complete tick, labelled with the version it read or wrote (v0 = the key's
//     version before the run, then v1, v2 … in the order the store applied them). Lost writes
//     are red, with a red line to the write that replaced them; writes that did not apply grey,
//     unknown outcomes amber. Hovering a mark shows its writer, op, attempt, call, key, values
//     (write ids), outcome and ticks;
//   * per key, the version chain the store ended with (v0 → … → final), each lost write hanging
//     under the version it read; long runs of uneventful versions collapse to "… n versions …";
//   * the list of lost writes, each linked to its mark.
// Large runs stay usable: the timeline starts fitted to the window; + / − zoom (labels appear
// once marks are wide enough), a lane's label collapses it, "only writers in losses" collapses
// the others. Without JavaScript the page still shows everything at the fitted zoom.
//
// Thread safety: pure functions of the report (write_html also writes the file).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <vector>

#include "noclobber/race_harness/report.hpp"

namespace noclobber {
namespace detail {

inline std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

inline std::string px_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

/// Geometry and names the timeline and the chains share.
struct html_layout {
  static constexpr double left = 64;  // room for lane labels
  static constexpr double top = 24;   // room for the tick axis
  static constexpr double lane_height = 20;
  static constexpr double fit_width = 1400;

  const race_report& report;
  const race_history& h;
  std::vector<std::uint64_t> ticks;                                         // distinct ticks, sorted
  std::map<std::uint32_t, std::size_t> lane_of;                             // writer -> lane
  std::vector<std::unordered_map<write_id, std::size_t, id_hash>> numbers;  // per key: id -> vN
  std::unordered_map<write_id, std::size_t, id_hash> lost_index;            // lost written id -> n
  std::unordered_map<write_id, std::size_t, id_hash> record_of;  // written id -> record (applied first)
  double px = 1;                                                 // per tick, at the fitted zoom

  explicit html_layout(const race_report& r) : report(r), h(r.history) {
    for (const race_write& w : h.writes) {
      ticks.push_back(w.invoke);
      ticks.push_back(w.complete);
      lane_of.emplace(w.writer, 0);
    }
    for (const race_read& x : h.reads) {
      ticks.push_back(x.invoke);
      ticks.push_back(x.complete);
      lane_of.emplace(x.writer, 0);
    }
    std::sort(ticks.begin(), ticks.end());
    ticks.erase(std::unique(ticks.begin(), ticks.end()), ticks.end());
    std::size_t lane = 0;
    for (auto& [writer, l] : lane_of) l = lane++;
    for (std::uint32_t k = 0; k < h.keys.size() || k < h.final_versions.size(); ++k)
      numbers.push_back(version_numbers(h, k));
    for (std::size_t i = 0; i < r.check.lost.size(); ++i) lost_index.emplace(r.check.lost[i].lost.written, i);
    for (std::size_t i = 0; i < h.writes.size(); ++i) {
      auto [it, inserted] = record_of.emplace(h.writes[i].written, i);
      if (!inserted && h.writes[it->second].outcome == op_outcome::failed) it->second = i;
    }
    px = std::clamp(fit_width / static_cast<double>(std::max<std::size_t>(ticks.size(), 1)), 0.02, 60.0);
  }

  [[nodiscard]] std::size_t rank(std::uint64_t tick) const {
    return static_cast<std::size_t>(std::lower_bound(ticks.begin(), ticks.end(), tick) - ticks.begin());
  }
  [[nodiscard]] std::string version(std::uint32_t key, write_id v) const {
    if (key < numbers.size()) {
      auto it = numbers[key].find(v);
      if (it != numbers[key].end()) return "v" + std::to_string(it->second);
    }
    return (v & foreign_version_bit) ? "v(outside)" : "v?";
  }
  [[nodiscard]] double lanes_height() const {
    return top + static_cast<double>(lane_of.size()) * lane_height + 8;
  }
};

/// One mark: a <g> with its rectangle, label and hover text; data-* carry what the script needs.
inline void html_mark(std::string& out, const html_layout& L, const std::string& id, const std::string& cls,
                      std::uint32_t writer, std::uint64_t t0, std::uint64_t t1, const std::string& label,
                      const std::string& hover) {
  const std::size_t r0 = L.rank(t0), r1 = L.rank(t1);
  const double lane = static_cast<double>(L.lane_of.at(writer));
  const double x = html_layout::left + static_cast<double>(r0) * L.px;
  const double w =
      std::max(static_cast<double>(r1 - r0) * L.px, cls.find("lost") != std::string::npos ? 4.0 : 2.0);
  const double y = html_layout::top + lane * html_layout::lane_height + 2;
  out += "<g class=\"m " + cls + "\" id=\"" + id + "\" data-lane=\"" + std::to_string(L.lane_of.at(writer)) +
         "\" data-t0=\"" + std::to_string(r0) + "\" data-t1=\"" + std::to_string(r1) + "\"><title>" +
         html_escape(hover) + "</title><rect x=\"" + px_text(x) + "\" y=\"" + px_text(y) + "\" width=\"" +
         px_text(w) + "\" height=\"" + px_text(html_layout::lane_height - 4) + "\"/><text x=\"" +
         px_text(x + 2) + "\" y=\"" + px_text(y + 12) + "\"" + (w < 30 ? " class=\"hidden\"" : "") + ">" +
         html_escape(label) + "</text></g>\n";
}

inline std::string html_write_hover(const html_layout& L, const race_write& w) {
  std::string s =
      "W" + std::to_string(w.writer) + " op " + std::to_string(w.op) + " attempt " +
      std::to_string(w.attempt) + ": " + std::string(to_string(w.kind)) + " key " + key_name(L.h, w.key) +
      "\nread " + L.version(w.key, w.read_from) + " (id " + std::to_string(w.read_from) + "), wrote " +
      (w.outcome == op_outcome::failed ? std::string("(not applied)") : L.version(w.key, w.written)) +
      " (id " + std::to_string(w.written) + ")\noutcome " + std::string(to_string(w.outcome)) + ", ticks " +
      std::to_string(w.invoke) + "–" + std::to_string(w.complete);
  if (auto it = L.lost_index.find(w.written); it != L.lost_index.end() && w.outcome == op_outcome::ok) {
    const race_write& by = L.report.check.lost[it->second].overwritten_by;
    s += "\nLOST";
    if (by.writer != 0)
      s += ": overwritten by W" + std::to_string(by.writer) + " op " + std::to_string(by.op);
  }
  return s;
}

/// Lines from lost writes to the writes that replaced them (the first html_max_links).
inline constexpr std::size_t html_max_links = 200;
inline void html_lost_links(std::string& out, const html_layout& L) {
  std::size_t drawn = 0;
  for (const lost_write& l : L.report.check.lost) {
    if (l.overwritten_by.writer == 0 || drawn == html_max_links) continue;
    ++drawn;
    auto from = L.record_of.find(l.lost.written);
    auto to = L.record_of.find(l.overwritten_by.written);
    if (from == L.record_of.end() || to == L.record_of.end()) continue;
    const race_write& a = L.h.writes[from->second];
    const race_write& b = L.h.writes[to->second];
    auto mid_x = [&](const race_write& w) {
      return html_layout::left + static_cast<double>(L.rank(w.invoke) + L.rank(w.complete)) / 2 * L.px;
    };
    auto mid_y = [&](const race_write& w) {
      return html_layout::top +
             (static_cast<double>(L.lane_of.at(w.writer)) + 0.5) * html_layout::lane_height;
    };
    out += "<line class=\"lostlink\" data-from=\"w" + std::to_string(from->second) + "\" data-to=\"w" +
           std::to_string(to->second) + "\" x1=\"" + px_text(mid_x(a)) + "\" y1=\"" + px_text(mid_y(a)) +
           "\" x2=\"" + px_text(mid_x(b)) + "\" y2=\"" + px_text(mid_y(b)) + "\"/>\n";
  }
}

/// The timeline: lanes, lost links, reads, writes.
inline void html_timeline(std::string& out, const html_layout& L) {
  const double width = html_layout::left + static_cast<double>(L.ticks.size()) * L.px + 16;
  out += "<div class=\"scroll\"><svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" +
         px_text(width) + "\" height=\"" + px_text(L.lanes_height()) + "\" data-px=\"" + px_text(L.px) +
         "\" data-ticks=\"" + std::to_string(L.ticks.size()) + "\">\n<g class=\"lanes\">\n";
  for (const auto& [writer, lane] : L.lane_of) {
    const double y = html_layout::top + static_cast<double>(lane) * html_layout::lane_height;
    out += "<g class=\"lane\" data-lane=\"" + std::to_string(lane) +
           "\"><text class=\"lane-label\" x=\"4\" y=\"" + px_text(y + 14) + "\">W" + std::to_string(writer) +
           "</text><line x1=\"" + px_text(html_layout::left) + "\" x2=\"" + px_text(width) + "\" y1=\"" +
           px_text(y + html_layout::lane_height) + "\" y2=\"" + px_text(y + html_layout::lane_height) +
           "\"/></g>\n";
  }
  out += "</g>\n<g class=\"links\">\n";
  html_lost_links(out, L);
  out += "</g>\n<g class=\"marks\">\n";
  for (std::size_t i = 0; i < L.h.reads.size(); ++i) {
    const race_read& r = L.h.reads[i];
    const std::string v = r.found ? L.version(r.key, r.version) : "absent";
    html_mark(out, L, "r" + std::to_string(i), "read", r.writer, r.invoke, r.complete, "r " + v,
              "W" + std::to_string(r.writer) + " op " + std::to_string(r.op) + ": read key " +
                  key_name(L.h, r.key) + "\nsaw " + v + " (id " + std::to_string(r.version) + "), ticks " +
                  std::to_string(r.invoke) + "–" + std::to_string(r.complete));
  }
  for (std::size_t i = 0; i < L.h.writes.size(); ++i) {
    const race_write& w = L.h.writes[i];
    std::string cls = "write " + std::string(to_string(w.outcome));
    std::string label =
        "w " + (w.outcome == op_outcome::failed ? std::string("✗") : L.version(w.key, w.written));
    if (w.outcome == op_outcome::unknown) label += "?";
    if (L.lost_index.count(w.written) && w.outcome == op_outcome::ok) {
      cls += " lost";
      label += " lost";
    }
    html_mark(out, L, "w" + std::to_string(i), cls, w.writer, w.invoke, w.complete, label,
              html_write_hover(L, w));
  }
  out += "</g>\n</svg></div>\n";
}
/// Per key: the final chain, lost writes hanging under the version they read, quiet stretches
/// collapsed.
inline void html_chains(std::string& out, const html_layout& L) {
  const race_history& h = L.h;
  std::unordered_map<write_id, std::size_t, id_hash> by_written;
  for (std::size_t i = 0; i < h.writes.size(); ++i)
    if (h.writes[i].outcome != op_outcome::failed) by_written.emplace(h.writes[i].written, i);
  for (std::uint32_t k = 0; k < h.final_versions.size(); ++k) {
    // The chain, oldest first.
    std::vector<write_id> chain;
    const write_id start = k < h.initial_versions.size() ? h.initial_versions[k] : initial_version;
    for (write_id v = h.final_versions[k]; chain.size() <= h.writes.size();) {
      chain.push_back(v);
      if (v == start || v == initial_version) break;
      auto it = by_written.find(v);
      if (it == by_written.end()) break;
      v = h.writes[it->second].read_from;
    }
    std::reverse(chain.begin(), chain.end());
    // Lost writes of this key, by the version they read.
    std::unordered_map<write_id, std::vector<const lost_write*>, id_hash> lost_under;
    for (const lost_write& l : L.report.check.lost)
      if (l.lost.key == k) lost_under[l.lost.read_from].push_back(&l);
    // Which chain entries to show: ends, those with lost writes under them, and their neighbours.
    std::vector<char> show(chain.size(), 0);
    for (std::size_t i = 0; i < chain.size(); ++i) {
      if (i == 0 || i + 1 == chain.size() || lost_under.count(chain[i])) {
        for (std::size_t j = i > 0 ? i - 1 : 0; j <= std::min(i + 1, chain.size() - 1); ++j) show[j] = 1;
      }
    }
    std::string body;
    double x = 8;
    std::size_t rows = 1;
    for (std::size_t i = 0; i < chain.size();) {
      if (!show[i]) {
        std::size_t j = i;
        while (j < chain.size() && !show[j]) ++j;
        body += "<text class=\"gap\" x=\"" + px_text(x) + "\" y=\"26\">… " + std::to_string(j - i) +
                " versions …</text>\n";
        x += 110;
        i = j;
        continue;
      }
      const write_id v = chain[i];
      auto it = by_written.find(v);
      std::string who = it == by_written.end() ? "before the run"
                                               : "W" + std::to_string(h.writes[it->second].writer) + " op " +
                                                     std::to_string(h.writes[it->second].op);
      body += "<g class=\"version\"><title>" +
              html_escape(L.version(k, v) + ": " + who + " (id " + std::to_string(v) + ")") +
              "</title><rect x=\"" + px_text(x) + "\" y=\"10\" width=\"90\" height=\"24\"/><text x=\"" +
              px_text(x + 6) + "\" y=\"26\">" +
              html_escape(L.version(k, v) + " " + (it == by_written.end() ? "start" : who)) + "</text></g>\n";
      if (auto lu = lost_under.find(v); lu != lost_under.end()) {
        double y = 44;
        for (const lost_write* l : lu->second) {
          std::string text = "W" + std::to_string(l->lost.writer) + " op " + std::to_string(l->lost.op) +
                             " " + L.version(k, l->lost.written) + " lost";
          if (l->overwritten_by.writer != 0)
            text += " (by W" + std::to_string(l->overwritten_by.writer) + ")";
          body += "<g class=\"version lost\"><title>" + html_escape(text) + "</title><line x1=\"" +
                  px_text(x + 45) + "\" y1=\"" + px_text(y - 10) + "\" x2=\"" + px_text(x + 45) + "\" y2=\"" +
                  px_text(y) + "\"/><rect x=\"" + px_text(x) + "\" y=\"" + px_text(y) +
                  "\" width=\"160\" height=\"20\"/><text x=\"" + px_text(x + 4) + "\" y=\"" +
                  px_text(y + 14) + "\">" + html_escape(text) + "</text></g>\n";
          y += 26;
          rows = std::max<std::size_t>(rows, static_cast<std::size_t>((y - 44) / 26) + 1);
        }
        x += 70;  // room for the hanging boxes' width
      }
      x += 100;
      if (i + 1 < chain.size())
        body += "<text class=\"arrow\" x=\"" + px_text(x - 10) + "\" y=\"26\">→</text>\n";
      ++i;
    }
    out += "<h3>key " + html_escape(key_name(h, k)) +
           "</h3>\n<div class=\"scroll\"><svg class=\"chain\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" +
           px_text(x + 20) + "\" height=\"" + px_text(50 + static_cast<double>(rows) * 26) + "\">\n" + body +
           "</svg></div>\n";
  }
}

inline constexpr std::string_view html_style = R"css(
body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#222}
pre{background:#f5f5f5;padding:6px;white-space:pre-wrap}
.scroll{overflow:auto;border:1px solid #ccc;max-height:80vh}
.controls{margin:8px 0}.controls button{min-width:2.2em}
svg text{font:11px monospace;fill:#222}
.lane line{stroke:#e4e4e4}.lane-label{cursor:pointer;font-weight:bold}
.lane.collapsed .lane-label{fill:#999}
.m rect{stroke:#333;stroke-width:.5}.m.read rect{fill:#cfe3ff}.m.write.ok rect{fill:#bfe8bf}
.m.write.failed rect{fill:#ddd}.m.write.unknown rect{fill:#ffd98a}.m.write.lost rect{fill:#e53935;stroke:#7f0000;stroke-width:1.5}
.m.write.lost text{fill:#fff;font-weight:bold}.m.hiddenlane{display:none}
text.hidden{display:none}
.lostlink{stroke:#e53935;stroke-width:1.5;stroke-dasharray:4 2}
.chain rect{fill:#e8f5e9;stroke:#2e7d32}.chain .lost rect{fill:#ffebee;stroke:#e53935}.chain .lost line{stroke:#e53935}
.chain .gap{fill:#888}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}
#errors:empty{display:none}#errors{color:#b00}
)css";

inline constexpr std::string_view html_script = R"js(
(function(){
var errors=document.getElementById('errors');
window.addEventListener('error',function(e){errors.textContent+=String(e.message)+'\n';document.body.setAttribute('data-errors','yes');});
var svg=document.getElementById('timeline');
if(!svg){document.body.setAttribute('data-rendered','yes');return;}
var LEFT=64,TOP=24,LANE=20;
var ticks=+svg.getAttribute('data-ticks'),fitPx=+svg.getAttribute('data-px'),px=fitPx;
var lanes=Array.prototype.slice.call(svg.querySelectorAll('g.lane'));
var marks=Array.prototype.slice.call(svg.querySelectorAll('g.m'));
var links=Array.prototype.slice.call(svg.querySelectorAll('line.lostlink'));
var collapsed={};
function laneY(){var y={},at=0;lanes.forEach(function(l){var n=l.getAttribute('data-lane');y[n]=at;at+=collapsed[n]?6:LANE;});y.total=at;return y;}
function layout(){
  var ys=laneY(),width=LEFT+ticks*px+16;
  svg.setAttribute('width',width.toFixed(1));svg.setAttribute('height',(TOP+ys.total+8).toFixed(1));
  lanes.forEach(function(l){var n=l.getAttribute('data-lane'),y=TOP+ys[n],h=collapsed[n]?6:LANE;
    l.classList.toggle('collapsed',!!collapsed[n]);
    var t=l.querySelector('text'),ln=l.querySelector('line');t.setAttribute('y',(y+Math.min(14,h)).toFixed(1));
    ln.setAttribute('x2',width.toFixed(1));ln.setAttribute('y1',(y+h).toFixed(1));ln.setAttribute('y2',(y+h).toFixed(1));});
  marks.forEach(function(m){var n=m.getAttribute('data-lane'),t0=+m.getAttribute('data-t0'),t1=+m.getAttribute('data-t1');
    var lost=m.classList.contains('lost'),hide=!!collapsed[n]&&!lost;m.classList.toggle('hiddenlane',hide);if(hide)return;
    var h=collapsed[n]?4:LANE-4,x=LEFT+t0*px,w=Math.max((t1-t0)*px,lost?4:2),y=TOP+ys[n]+(collapsed[n]?1:2);
    var r=m.querySelector('rect'),t=m.querySelector('text');
    r.setAttribute('x',x.toFixed(2));r.setAttribute('width',w.toFixed(2));r.setAttribute('y',y.toFixed(2));r.setAttribute('height',h);
    t.setAttribute('x',(x+2).toFixed(2));t.setAttribute('y',(y+12).toFixed(2));t.classList.toggle('hidden',w<30||!!collapsed[n]);});
  links.forEach(function(k){var a=document.getElementById(k.getAttribute('data-from')),b=document.getElementById(k.getAttribute('data-to'));
    function c(m){var r=m.querySelector('rect');return [+r.getAttribute('x')+(+r.getAttribute('width'))/2,+r.getAttribute('y')+(+r.getAttribute('height'))/2];}
    var p=c(a),q=c(b);k.setAttribute('x1',p[0]);k.setAttribute('y1',p[1]);k.setAttribute('x2',q[0]);k.setAttribute('y2',q[1]);});
  document.getElementById('zoom-level').textContent=(px>=1?px.toFixed(1):px.toFixed(3))+' px per tick, '+ticks+' ticks';
}
document.getElementById('zoom-in').onclick=function(){px=Math.min(px*2,200);layout();};
document.getElementById('zoom-out').onclick=function(){px=Math.max(px/2,0.005);layout();};
document.getElementById('fit').onclick=function(){px=fitPx;layout();};
lanes.forEach(function(l){l.querySelector('text').addEventListener('click',function(){var n=l.getAttribute('data-lane');collapsed[n]=!collapsed[n];layout();});});
var involved={};marks.forEach(function(m){if(m.classList.contains('lost'))involved[m.getAttribute('data-lane')]=1;});
links.forEach(function(k){var b=document.getElementById(k.getAttribute('data-to'));if(b)involved[b.getAttribute('data-lane')]=1;});
document.getElementById('only-lost').onchange=function(e){var on=e.target.checked;lanes.forEach(function(l){var n=l.getAttribute('data-lane');collapsed[n]=on&&!involved[n];});layout();};
layout();
document.body.setAttribute('data-marks',String(marks.length));
document.body.setAttribute('data-lost-marks',String(svg.querySelectorAll('g.m.lost').length));
document.body.setAttribute('data-rendered','yes');
})();
)js";

}  // namespace detail

/// The report as a self-contained HTML page (see the overview).
[[nodiscard]] inline std::string to_html(const race_report& r) {
  const detail::html_layout L(r);
  std::string out;
  out.reserve(4096 + (r.history.writes.size() + r.history.reads.size()) * 420);
  const std::string title = "noclobber race: " + r.store + " / " + r.strategy;
  out += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" +
         detail::html_escape(title) + "</title><style>" + std::string(detail::html_style) +
         "</style></head>\n<body data-rendered=\"no\">\n<h1>" + detail::html_escape(title) + "</h1>\n";
  out += "<p class=\"verdict " +
         std::string(r.ok() ? "ok\">no lost update" : "lost\">LOST UPDATES: " + std::to_string(r.lost())) +
         "</p>\n<pre class=\"report\">" + detail::html_escape(r.to_text()) + "</pre>\n";
  out +=
      "<h2>Timeline</h2>\n<p>One lane per writer; marks span a call's logical ticks (invoke to complete). "
      "Blue: "
      "read, green: write applied, grey: not applied, amber: unknown outcome, red: lost (the dashed line "
      "goes to "
      "the write that replaced it). Hover a mark for its values; click a writer's label to collapse its "
      "lane.</p>\n<div class=\"controls\"><button id=\"zoom-in\">+</button> <button "
      "id=\"zoom-out\">−</button> "
      "<button id=\"fit\">fit</button> <label><input type=\"checkbox\" id=\"only-lost\"> only writers in "
      "losses</label> <span id=\"zoom-level\"></span></div>\n";
  detail::html_timeline(out, L);
  out +=
      "<h2>Version chains</h2>\n<p>What each key ended with, oldest first; lost writes hang under the "
      "version "
      "they read.</p>\n";
  detail::html_chains(out, L);
  out += "<h2>Lost writes</h2>\n";
  if (r.check.lost.empty()) {
    out += "<p>none</p>\n";
  } else {
    out += "<table><tr><th>lost</th><th>key</th><th>read</th><th>wrote</th><th>overwritten by</th></tr>\n";
    for (const lost_write& l : r.check.lost) {
      auto rec = L.record_of.find(l.lost.written);
      const std::string mark = rec == L.record_of.end() ? "" : "w" + std::to_string(rec->second);
      out += "<tr><td><a href=\"#" + mark + "\">W" + std::to_string(l.lost.writer) + " op " +
             std::to_string(l.lost.op) + " attempt " + std::to_string(l.lost.attempt) + "</a></td><td>" +
             detail::html_escape(detail::key_name(r.history, l.lost.key)) + "</td><td>" +
             L.version(l.lost.key, l.lost.read_from) + "</td><td>" + L.version(l.lost.key, l.lost.written) +
             "</td><td>" +
             (l.overwritten_by.writer == 0 ? std::string("(not recorded)")
                                           : "W" + std::to_string(l.overwritten_by.writer) + " op " +
                                                 std::to_string(l.overwritten_by.op)) +
             "</td></tr>\n";
    }
    out += "</table>\n";
  }
  out += "<pre id=\"errors\"></pre>\n<script>" + std::string(detail::html_script) +
         "</script>\n</body></html>\n";
  return out;
}

/// Writes to_html(r) to `path`. Throws std::runtime_error naming the path when it cannot.
inline void write_html(const race_report& r, const std::filesystem::path& path) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  const std::string page = to_html(r);
  f.write(page.data(), static_cast<std::streamsize>(page.size()));
  f.close();
  if (!f) throw std::runtime_error("noclobber: cannot write the race report to " + path.string());
}

/// Writes to_html(r) to a new file (noclobber_race_<store>_<strategy>_<time>_<n>.html) in the
/// folder named by the environment variable NOCLOBBER_RACE_HTML_DIR (created if missing), else in
/// the temp folder, and returns its path. Throws std::runtime_error when it cannot.
[[nodiscard]] inline std::filesystem::path write_html(const race_report& r) {
  static std::atomic<unsigned> counter{0};
  std::string name = "noclobber_race_" + r.store + "_" + r.strategy;
  for (char& c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) c = '-';
  const auto stamp = std::chrono::system_clock::now().time_since_epoch().count();
  std::filesystem::path dir;
  if (const char* env = std::getenv("NOCLOBBER_RACE_HTML_DIR"); env != nullptr && *env != '\0') {
    dir = env;
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);  // a failure shows when the file cannot be written
  } else {
    dir = std::filesystem::temp_directory_path();
  }
  const std::filesystem::path path =
      dir / (name + "_" + std::to_string(stamp) + "_" + std::to_string(counter++) + ".html");
  write_html(r, path);
  return path;
}

}  // namespace noclobber
