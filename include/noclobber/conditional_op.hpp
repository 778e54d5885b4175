// noclobber/conditional_op.hpp — the I/O-free core of every conditional operation, and the one
// home of the unknown-outcome rule.
//
// Overview
// --------
// read_modify_write, write_if_unchanged / update_field_if_unchanged, erase_if_unchanged,
// patch_if_unchanged (native and emulated), the idempotency ledger's transitions and the
// coroutine form all do the same thing per attempt: maybe read, decide, send one conditional
// request, and act on the answer. What differs is *what* they send and how they recognise their
// own request in a later read. Those differences are an "operation" (the `conditional_op`
// concept below); everything else lives once in `detail::op_core`:
//
//   * when an attempt reads first (the first attempt unless the operation already holds its
//     request, after conflict / absent / exists / transient_restart, while an outcome is unknown)
//     and when it resends the same request (after `transient`);
//   * the unknown-outcome rule. A request answered `indeterminate` may or may not have landed.
//     It is never treated as a conflict; the key is read again at once and
//       - the read shows our request (the operation recognises it: a value we sent, a key we
//         erased): it landed: the result is applied;
//       - the key is untouched (still at the token the request was conditioned on, or still
//         absent after a create): it did not land: the same request is sent again;
//       - anything else: unknowable from here (ours may have landed and been overwritten): the
//         loop stops with stop_reason::indeterminate.
//     If that read itself fails, the next attempt reads first and applies the same rule. A
//     request of ours whose outcome was unknown is recognised in every later read as well, and
//     "untouched" only means "not landed yet": the request may still land later (etcd commits a
//     proposal that was in flight when its leader was cut off), so every later read that has moved
//     past its token without showing ours also stops the loop with indeterminate; the update is
//     never applied afresh on such a read.
//   * what the attempt tells cas_retry: applied, decided(status), or the store's status and words.
//
// An operation supplies (see `conditional_op`): the request to send (op_request) with its token,
// value or patch; `on_read` (decide from the attempt's read: send, or decided); `on_refused`
// (a definite refusal: retry, or decided — a dropped patch); `on_unknown` / `recognise` (remember
// what identifies a request whose outcome is unknown, and find it in a read); `on_applied` /
// `on_landed`; and `finish` (its own result type, whose retry_stats the loop filled). Drivers perform
// the I/O the core asks for: detail::op_machine below (direct store calls, under cas_retry) and
// detail::async_op_machine (asio/async_read_modify_write.hpp, each call awaited, under
// async_cas_retry). Both run the same sequence:
//
//   if (core.starts_with_read(info) && core.on_read(read())) return core.answer();
//   if (core.on_sent(send(core.request()))) core.on_resolving_read(read());
//   return core.answer();
//
// where send() of read_then_write_if_match (an emulated patch) is
//   r = read(); w = core.on_send_read(r) or else write_if_match(core.token(), core.value()).
//
// A new operation is a new case, not a copy: a fenced write with a lease token is an operation
// whose request is write_if_match conditioned on (token, fence) — a new op_request the drivers
// map to the store's fenced call — and which recognises its value like read_modify_write; a
// server-side JSON merge patch is patch_if_match with a merge document as the patch (recognised
// by nothing, like a native patch); a typed / codec store write is read_modify_write's operation
// over a store whose traits decode and encode. The rule above applies to each unchanged.
//
// Thread safety: an op_core and its machine belong to one call (not thread-safe); they hold no
// lock. Every store call and every operation callback runs on the calling thread (or the
// awaiting coroutine's executor) under no noclobber lock.
#pragma once

#include <concepts>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

#include "noclobber/cas_retry.hpp"
#include "noclobber/conditional_writer.hpp"
#include "noclobber/outcome.hpp"

namespace noclobber::detail {

/// The conditional request an operation sends.
enum class op_request : unsigned char {
  write_if_match,            // write_if_match(key, token(), value())
  create_if_absent,          // create_if_absent(key, value())
  erase_if_match,            // erase_if_match(key, token())
  patch_if_match,            // patch_if_match(key, token(), patch())
  read_then_write_if_match,  // an emulated conditional: read, on_send_read, write_if_match
};

/// A set of op_requests (the ones an operation may ask for: drivers compile only those).
[[nodiscard]] constexpr unsigned request_bit(op_request r) noexcept {
  return 1U << static_cast<unsigned>(r);
}

/// An operation's answer to a read or a refusal: send the request, or stop, decided.
struct op_step {
  bool decided = false;
  write_status last_status = write_status::applied;  // when decided: what the decision rests on

  [[nodiscard]] static constexpr op_step send() noexcept { return {}; }
  [[nodiscard]] static constexpr op_step decide(write_status last = write_status::applied) noexcept {
    return {true, last};
  }
};

/// The store's words for an attempt's failure, owned by the op_core; none (an applied attempt,
/// a refusal without words) reads as the empty store_error. Refers to the op_core's slot and
/// reads it when converted (the loop does so before the next attempt), so that an answer costs
/// no test of the slot.
class op_error_ref {
 public:
  explicit op_error_ref(const std::optional<store_error>& e) noexcept : e_(&e) {}
  operator const store_error&() const noexcept { return *e_ ? **e_ : empty_error(); }  // NOLINT: implicit

 private:
  const std::optional<store_error>* e_;
};

/// What one attempt tells cas_retry: a status, the store's words, and what it settled about an
/// unknown outcome (counted by retry_controller as indeterminate_resolved).
struct op_status {
  write_status status = write_status::permanent;
  op_error_ref error;
  attempt_note note = attempt_note::none;
};

/// One kind of conditional operation (see the overview).
// clang-format off
template <class Op>
concept conditional_op =
    std::derived_from<typename Op::result_type, retry_stats> &&
    requires(Op& op, const Op& cop, read_result<typename Op::value_type, typename Op::token_type>&& r,
             const read_result<typename Op::value_type, typename Op::token_type>& cr,
             write_result<typename Op::token_type>& w, typename Op::result_type& out) {
      { Op::requests } -> std::convertible_to<unsigned>;
      { cop.ready() } -> std::same_as<bool>;  // a request is prepared: an attempt may resend it unread
      { cop.request() } -> std::same_as<op_request>;
      { op.on_read(std::move(r)) } -> std::same_as<op_step>;
      { op.on_refused(std::as_const(w)) } -> std::same_as<op_step>;
      op.on_unknown();
      { cop.recognise(cr) } -> std::same_as<bool>;
      op.on_applied(w);
      op.on_landed(std::move(r));
      op.finish(out, true);  // out's retry_stats are filled; the operation fills the rest
    };
// clang-format on

/// The decisions of one conditional operation, free of I/O (see the overview). Not thread-safe.
template <class Op>
class op_core {
 public:
  using op_type = Op;
  using value_type = typename Op::value_type;
  using token_type = typename Op::token_type;
  using read_type = read_result<value_type, token_type>;
  using wresult = write_result<token_type>;
  using answer_type = attempt_result<op_status>;
  using result_type = typename Op::result_type;

  template <class... Args>
  explicit op_core(Args&&... args) : op_(std::forward<Args>(args)...) {}

  [[nodiscard]] Op& op() noexcept { return op_; }
  [[nodiscard]] const Op& op() const noexcept { return op_; }
  [[nodiscard]] op_request request() const noexcept { return op_.request(); }

  /// Whether this attempt starts with a read; otherwise it (re)sends the prepared request.
  [[nodiscard]] bool starts_with_read(const attempt_info& info) const noexcept {
    return resolving_ || !op_.ready() || (info.reread && info.number > 1);
  }

  /// The attempt's first read. true: the attempt is over (answer()); false: send the request.
  [[nodiscard]] bool on_read(read_type&& read) {
    if (read.failed() || unknown_) [[unlikely]]
      return on_unusual_read(std::move(read));
    return decide(op_.on_read(std::move(read)));
  }

  /// For read_then_write_if_match: the read the emulated conditional starts with. An answer
  /// (failed read, absent, token moved) is the request's; nullopt: send write_if_match now.
  [[nodiscard]] std::optional<wresult> on_send_read(read_type&& read) {
    if (read.failed()) return wresult::make_failed(as_write_status(read.status), std::move(read.error));
    return op_.on_send_read(std::move(read));
  }

  /// The request's answer. true: its outcome is unknown: read at once and pass that read to
  /// on_resolving_read. false: the attempt is over (answer()).
  [[nodiscard]] bool on_sent(wresult&& w) {
    if (w.status == write_status::applied) [[likely]] {
      op_.on_applied(w);
      status_ = write_status::applied;
      return false;
    }
    return on_refused_or_unknown(std::move(w));
  }

  /// The attempt failed before the operation's request (see op_machine::refuse).
  void refuse(wresult&& w) { (void)fail(w.status, std::move(w.error)); }

  /// The read right after an indeterminate answer: the unknown-outcome rule.
  void on_resolving_read(read_type&& read) {
    if (read.failed()) {  // still unknown: the next attempt reads first (resolving_ stays set)
      status_ = write_status::transient;
      return;
    }
    if (op_.recognise(read)) {
      (void)land(std::move(read));
      return;
    }
    resolving_ = false;
    // Untouched: it did not land; resend. Otherwise unknowable: stop (the request's own words).
    if (untouched(read)) {
      status_ = write_status::transient;
      note_ = attempt_note::resolved_resend;
    } else {
      status_ = write_status::indeterminate;
    }
  }

  /// The attempt's answer to cas_retry (once per attempt: it hands over the attempt's note). A
  /// decided attempt carries no note: deciding after settling an unknown outcome (a patch
  /// dropped right after its earlier request was found not to have landed) is not counted.
  [[nodiscard]] answer_type answer() noexcept {
    const attempt_note note = note_;
    note_ = attempt_note::none;
    if (decided_) return decided(decided_status_);
    return op_status{status_, op_error_ref(error_), note};
  }

  /// The operation fills the rest of `out`, whose retry_stats the loop filled.
  void finish(result_type& out) {
    const bool unknown = resolving_ || out.reason == stop_reason::indeterminate;
    op_.finish(out, unknown);
  }

 private:
  // The rare paths live out of line, so that the attempt's fast path (read, decide, send,
  // applied) stays small enough to be inlined into the retry loop.

  // A failed read, or any read once some request's outcome was unknown: the rule.
  [[gnu::noinline]] bool on_unusual_read(read_type&& read) {
    if (read.failed()) return fail(as_write_status(read.status), std::move(read.error));
    if (unknown_ && op_.recognise(read)) return land(std::move(read));
    // A request whose outcome was unknown can still land after a read found the key untouched
    // (a read shows only that it has not landed yet). Once the key has moved past the token
    // that request was conditioned on, and the read does not show ours, it may have landed and
    // been overwritten: unknowable, whether or not an earlier read found the key untouched.
    if (unknown_ && !untouched(read)) {
      resolving_ = false;
      return fail(write_status::indeterminate,
                  {"indeterminate", "a request's outcome is unknown and the key has changed since"});
    }
    if (resolving_) {  // the read after an unknown outcome failed last time; the key is untouched
      resolving_ = false;
      note_ = attempt_note::resolved;  // it did not land: send the same request again
      return false;
    }
    return decide(op_.on_read(std::move(read)));
  }

  // Anything but applied: unknown (resolve at once), decided by the operation, or a failure.
  [[gnu::noinline]] bool on_refused_or_unknown(wresult&& w) {
    if (w.status == write_status::indeterminate) {
      op_.on_unknown();
      unknown_ = resolving_ = true;
      error_ = std::move(w.error);
      return true;
    }
    if (!decide(op_.on_refused(std::as_const(w)))) (void)fail(w.status, std::move(w.error));
    return false;
  }

  // The key is as the request left it: still absent after a create, or still at its token.
  [[nodiscard]] bool untouched(const read_type& read) const {
    if (op_.request() == op_request::create_if_absent) return read.absent();
    return read.found() && read.token == op_.token();
  }

  bool fail(write_status s, store_error&& e) {
    status_ = s;
    error_ = std::move(e);
    return true;
  }

  bool land(read_type&& read) {
    if (resolving_) note_ = attempt_note::resolved;
    resolving_ = false;
    op_.on_landed(std::move(read));
    status_ = write_status::applied;
    return true;
  }

  bool decide(op_step step) noexcept {
    if (!step.decided) return false;
    decided_ = true;
    decided_status_ = step.last_status;
    return true;
  }

  Op op_;
  std::optional<store_error> error_;  // the store's words for the attempt's failure (lazily built)
  write_status status_ = write_status::permanent;
  write_status decided_status_ = write_status::applied;
  bool decided_ = false;
  attempt_note note_ = attempt_note::none;  // what this attempt settled (handed over by answer())
  bool resolving_ = false;                  // a request's outcome is unknown; the next read decides
  bool unknown_ = false;                    // some request's outcome was unknown: recognise it in every read
};

/// One conditional operation on a synchronous store: op_core's sequence with direct store calls.
template <class Store, conditional_op Op>
class op_machine {
 public:
  using traits = store_traits<std::remove_cvref_t<Store>>;
  using key_type = store_key_t<Store>;
  using core_type = op_core<Op>;
  using wresult = typename core_type::wresult;
  using answer_type = typename core_type::answer_type;
  using result_type = typename core_type::result_type;

  template <class... Args>
  op_machine(Store& store, const key_type& key, Args&&... op_args)
      : store_(store), key_(key), core_(std::forward<Args>(op_args)...) {}

  /// One attempt (cas_retry's).
  answer_type operator()(const attempt_info& info) {
    if (core_.starts_with_read(info) && core_.on_read(traits::read(store_, key_))) return core_.answer();
    if (core_.on_sent(send())) core_.on_resolving_read(traits::read(store_, key_));
    return core_.answer();
  }

  /// An attempt that failed before the operation's own I/O (a driver's precondition, such as a
  /// lock the adapter takes first): `w`'s status and words as the attempt's answer.
  answer_type refuse(wresult&& w) {
    core_.refuse(std::move(w));
    return core_.answer();
  }

  /// The whole operation: cas_retry's loop (detail::run_cas_retry) over this machine's attempts,
  /// its statistics written straight into the result.
  template <retry_env Env>
  [[nodiscard]] result_type run(const retry_policy& policy, Env& env) {
    result_type out;
    std::optional<op_status> last;
    run_cas_retry(policy, *this, env, out, last);
    core_.finish(out);
    return out;
  }

  /// The result, for a driver that ran cas_retry itself around this machine's attempts.
  [[nodiscard]] result_type finish(retry_result<op_status>&& r) {
    result_type out;
    static_cast<retry_stats&>(out) = std::move(r);
    core_.finish(out);
    return out;
  }

  [[nodiscard]] core_type& core() noexcept { return core_; }

 private:
  wresult send() {
    constexpr unsigned may = Op::requests;
    const Op& op = core_.op();
    switch (core_.request()) {
      case op_request::write_if_match:
        if constexpr ((may & request_bit(op_request::write_if_match)) != 0) {
          return traits::write_if_match(store_, key_, op.token(), op.value());
        }
        break;
      case op_request::create_if_absent:
        if constexpr ((may & request_bit(op_request::create_if_absent)) != 0) {
          return traits::create_if_absent(store_, key_, op.value());
        }
        break;
      case op_request::erase_if_match:
        if constexpr ((may & request_bit(op_request::erase_if_match)) != 0) {
          return traits::erase_if_match(store_, key_, op.token());
        }
        break;
      case op_request::patch_if_match:
        if constexpr ((may & request_bit(op_request::patch_if_match)) != 0) {
          return traits::patch_if_match(store_, key_, op.token(), op.patch());
        }
        break;
      case op_request::read_then_write_if_match:
        if constexpr ((may & request_bit(op_request::read_then_write_if_match)) != 0) {
          if (auto answer = core_.on_send_read(traits::read(store_, key_))) return std::move(*answer);
          return traits::write_if_match(store_, key_, op.token(), op.value());
        }
        break;
    }
    return wresult::make_failed(write_status::permanent,
                                {"noclobber", "request outside the operation's set"});
  }

  Store& store_;
  const key_type& key_;
  core_type core_;
};

}  // namespace noclobber::detail
