// noclobber/memory_metrics.hpp — a metrics sink that keeps its totals in memory.
//
// Overview
// --------
// `memory_metrics` satisfies the metrics_sink concept of noclobber/metrics.hpp: each counter
// series (an instrument and its attributes) keeps its sum, each histogram series its count, sum,
// minimum and maximum. It serves tests, examples and programs that print their own numbers; a
// service exporting to OpenTelemetry forwards add / record to its Meter instead.
//
//   noclobber::memory_metrics sink;
//   auto policy = noclobber::with_metrics(noclobber::retry_policy{}, sink);
//   ... run loops with `policy` from any number of threads ...
//   sink.counter(noclobber::instruments::attempts, {{noclobber::metric_keys::status, "conflict"}});
//   std::fputs(sink.text().c_str(), stdout);   // one line per series
//
// Thread safety: every member may be called from any number of threads at once; one mutex
// guards the series and no user code runs under it (a std::string / std::map allocation that
// throws leaves the series as they were).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "noclobber/metrics.hpp"
#include "noclobber/thread_annotations.hpp"

namespace noclobber {

class memory_metrics {
 public:
  /// What a histogram series (or several, summed) received.
  struct histogram_summary {
    std::uint64_t count = 0;
    double sum = 0;
    double min = 0;  // 0 when count == 0
    double max = 0;
  };

  /// Counter Add: the series (instrument, attributes) grows by n.
  void add(const instrument& i, std::uint64_t n, metric_attributes attributes) {
    series_key key = make_key(i, attributes);
    const annotated_lock lock(mutex_);
    series_[std::move(key)].total += n;
  }

  /// Histogram Record: the series (instrument, attributes) receives v.
  void record(const instrument& i, double v, metric_attributes attributes) {
    series_key key = make_key(i, attributes);
    const annotated_lock lock(mutex_);
    histogram_summary& h = series_[std::move(key)].histogram;
    h.min = h.count == 0 ? v : std::min(h.min, v);
    h.max = h.count == 0 ? v : std::max(h.max, v);
    h.sum += v;
    ++h.count;
  }

  /// The sum of counter `i` over every series whose attributes include all of `match`.
  [[nodiscard]] std::uint64_t counter(const instrument& i,
                                      std::initializer_list<metric_attribute> match = {}) const {
    std::uint64_t total = 0;
    const annotated_lock lock(mutex_);
    for (const auto& [key, s] : series_) {
      if (matches(key, i, match)) total += s.total;
    }
    return total;
  }

  /// Histogram `i` over every series whose attributes include all of `match`, merged.
  [[nodiscard]] histogram_summary histogram(const instrument& i,
                                            std::initializer_list<metric_attribute> match = {}) const {
    histogram_summary out;
    const annotated_lock lock(mutex_);
    for (const auto& [key, s] : series_) {
      if (!matches(key, i, match) || s.histogram.count == 0) continue;
      out.min = out.count == 0 ? s.histogram.min : std::min(out.min, s.histogram.min);
      out.max = out.count == 0 ? s.histogram.max : std::max(out.max, s.histogram.max);
      out.sum += s.histogram.sum;
      out.count += s.histogram.count;
    }
    return out;
  }

  /// Every series, sorted, one per line: `name{key=value,...} total` for a counter and
  /// `name{...} count=N sum=S min=A max=B` (unit appended) for a histogram.
  [[nodiscard]] std::string text() const {
    std::string out;
    const annotated_lock lock(mutex_);
    for (const auto& [key, s] : series_) {
      out += key.name;
      out += '{';
      for (std::size_t n = 0; n < key.attributes.size(); ++n) {
        if (n != 0) out += ',';
        out += key.attributes[n].first + '=' + key.attributes[n].second;
      }
      out += "} ";
      if (key.kind == instrument_kind::counter) {
        out += std::to_string(s.total);
      } else {
        const histogram_summary& h = s.histogram;
        out += "count=" + std::to_string(h.count) + " sum=" + number(h.sum) + " min=" + number(h.min) +
               " max=" + number(h.max) + ' ' + key.unit;
      }
      out += '\n';
    }
    return out;
  }

  /// Forgets every series.
  void clear() {
    const annotated_lock lock(mutex_);
    series_.clear();
  }

 private:
  struct series_key {
    std::string name;
    std::vector<std::pair<std::string, std::string>> attributes;  // sorted by key
    std::string unit;
    instrument_kind kind = instrument_kind::counter;

    friend bool operator<(const series_key& a, const series_key& b) {
      return std::tie(a.name, a.attributes) < std::tie(b.name, b.attributes);
    }
  };
  struct series {
    std::uint64_t total = 0;      // counter
    histogram_summary histogram;  // histogram
  };

  static series_key make_key(const instrument& i, metric_attributes attributes) {
    series_key key{std::string(i.name), {}, std::string(i.unit), i.kind};
    key.attributes.reserve(attributes.size());
    for (const metric_attribute& a : attributes) key.attributes.emplace_back(a.key, a.value);
    std::sort(key.attributes.begin(), key.attributes.end());
    return key;
  }

  static bool matches(const series_key& key, const instrument& i,
                      std::initializer_list<metric_attribute> match) {
    if (key.name != i.name) return false;
    return std::all_of(match.begin(), match.end(), [&](const metric_attribute& m) {
      return std::any_of(key.attributes.begin(), key.attributes.end(),
                         [&](const auto& a) { return a.first == m.key && a.second == m.value; });
    });
  }

  static std::string number(double v) {
    std::string s = std::to_string(v);  // fixed, 6 decimals: trim the trailing zeros
    while (s.size() > 1 && s.back() == '0') s.pop_back();
    if (!s.empty() && s.back() == '.') s.pop_back();
    return s;
  }

  mutable annotated_mutex mutex_;
  std::map<series_key, series> series_ NOCLOBBER_GUARDED_BY(mutex_);
};

static_assert(metrics_sink<memory_metrics>);

}  // namespace noclobber
