#include "tools/loadgen/worker.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "proto/md5_auth.h"
#include "proto/messages.h"

namespace rb::loadgen {
namespace {

constexpr uint32_t kBufferCount = 512;
constexpr uint32_t kBufferSize = 32 * 1024;
constexpr int64_t kMaxWaitNs = 50'000'000;  // how soon a stop signal is noticed
constexpr int64_t kDrainNs = 1'000'000'000;  // at the end, how long answers in flight are awaited
constexpr char kStatementName[] = "rb_loadgen";

int64_t Now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// Client-side extended-protocol messages (proto/messages.h builds only what the pooler sends).
// No parameters, text results: what pgbench -M extended sends for a statement without any.
void AppendParse(std::string* out, absl::string_view name, absl::string_view sql) {
  proto::MessageWriter w(out);
  w.Begin(proto::msg::kParse);
  w.AddCString(name);
  w.AddCString(sql);
  w.AddInt16(0);  // no parameter types
  w.End();
}

void AppendSync(std::string* out) {
  proto::MessageWriter w(out);
  w.Begin(proto::msg::kSync);
  w.End();
}

void AppendBindDescribeExecuteSync(std::string* out, absl::string_view statement) {
  proto::MessageWriter w(out);
  w.Begin(proto::msg::kBind);
  w.AddCString("");  // the unnamed portal
  w.AddCString(statement);
  w.AddInt16(0);  // parameter formats
  w.AddInt16(0);  // parameters
  w.AddInt16(0);  // result formats: all text
  w.End();
  w.Begin(proto::msg::kDescribe);
  w.AddByte('P');
  w.AddCString("");
  w.End();
  w.Begin(proto::msg::kExecute);
  w.AddCString("");
  w.AddInt32(0);  // no row limit
  w.End();
  AppendSync(out);
}

std::string ErrnoText(absl::string_view what, int res) { return absl::StrCat(what, ": ", strerror(-res)); }

}  // namespace

void Worker::BuildMessages() {
  const std::string dbname = o_.dbname.empty() ? o_.user : o_.dbname;
  const proto::StartupParam params[] = {{"user", o_.user}, {"database", dbname}, {"application_name", "rb-loadgen"}};
  proto::AppendStartupMessage(&startup_, params);
  if (o_.mode != Mode::kQuery) return;
  if (!o_.extended) {
    proto::AppendQuery(&request_, o_.sql);
  } else if (o_.prepared) {
    // Parsed once per connection, right after login; each request binds the named statement.
    AppendParse(&prepare_, kStatementName, o_.sql);
    AppendSync(&prepare_);
    AppendBindDescribeExecuteSync(&request_, kStatementName);
  } else {
    AppendParse(&request_, "", o_.sql);
    AppendBindDescribeExecuteSync(&request_, "");
  }
}

void Worker::Run() {
  absl::StatusOr<tools::ThreadRing> ring = tools::CreateThreadRing(features_, kBufferCount, kBufferSize);
  if (!ring.ok()) {
    stats_->RecordError("", absl::StrCat("io_uring setup: ", ring.status().message()));
    stats_->finished.store(true);
    return;
  }
  ring_ = std::move(*ring);
  conns_ = std::make_unique<tools::ConnSet<Client>>(ring_.ring.get(), ring_.buffers.get());
  BuildMessages();
  now_ = start_ns_ = Now();
  if (plan_.rate > 0) interval_ns_ = 1e9 / plan_.rate;
  next_slot_ = static_cast<double>(now_);
  if (o_.mode == Mode::kQuery) first_pending_ = plan_.clients;
  if (o_.mode == Mode::kLogins) StartWindow();

  for (;;) {
    now_ = Now();
    FireTimers();
    CheckPhase();
    if (stopping_ && conns_->live() == 0) break;
    Pump();
    int64_t wait = kMaxWaitNs;
    if (!timers_.empty()) wait = std::min(wait, timers_.top().when - now_);
    if (window_start_ >= 0 && !stopping_) wait = std::min(wait, window_end_ - now_);
    if (stopping_) wait = std::min(wait, drain_deadline_ - now_);
    int ret = ring_.ring->SubmitAndWait(std::max<int64_t>(wait, 0));
    if (ret < 0) {
      stats_->RecordError("", ErrnoText("io_uring_enter", ret));
      break;
    }
    ring_.ring->DrainCompletions([this](const io_uring_cqe& cqe) { conns_->Dispatch(cqe, *this); });
    conns_->AfterDrain(*this);
  }
  stats_->finished.store(true);
}

// --- Phases ----------------------------------------------------------------------------------

void Worker::CheckPhase() {
  if (stopping_) {
    if (now_ >= drain_deadline_) conns_->ForEach([this](Client* c) { conns_->Close(c); });
    return;
  }
  if (window_start_ < 0) {
    // The measurement starts once the first logins are over, as pgbench's "without initial
    // connection time"; idle's hold starts once every client has tried.
    if ((o_.mode == Mode::kIdle && started_ == plan_.clients && logging_in_ == 0) ||
        (o_.mode == Mode::kQuery && first_pending_ == 0)) {
      StartWindow();
    }
  }
  bool stop = stop_->load(std::memory_order_relaxed);
  if (window_start_ >= 0 && now_ >= window_end_) stop = true;
  if (plan_.count > 0 && completed_ >= plan_.count) stop = true;
  if (stop) BeginStop();
}

void Worker::StartWindow() {
  window_start_ = now_;
  stats_->login_phase_ns = now_ - start_ns_;
  const double seconds = o_.mode == Mode::kIdle ? o_.hold : o_.duration;
  window_end_ = now_ + static_cast<int64_t>(seconds * 1e9);
  next_slot_ = static_cast<double>(now_);
  if (o_.mode == Mode::kQuery) conns_->ForEach([this](Client* c) { Refill(c); });
}

void Worker::BeginStop() {
  stopping_ = true;
  stats_->window_ns = window_start_ < 0 ? 0 : std::min(now_, window_end_) - window_start_;
  stats_->held = static_cast<uint64_t>(ready_);
  drain_deadline_ = now_ + kDrainNs;
  conns_->ForEach([this](Client* c) {
    if (c->closing) return;
    if (c->state != Client::State::kReady) {
      conns_->Close(c);  // a login cut short by the end of the run: not a failure
    } else if (c->in_flight == 0) {
      Finish(c);
    }  // else: its answers are awaited (OnReadyForQuery finishes it), up to the drain deadline
  });
}

void Worker::Schedule(int64_t when, TimerKind kind, const Client* c) {
  timers_.push(Timer{when, kind, c ? c->slot : 0, c ? c->generation : 0});
}

void Worker::FireTimers() {
  while (!timers_.empty() && timers_.top().when <= now_) {
    const Timer t = timers_.top();
    timers_.pop();
    Client* c = conns_->Find(t.slot, t.generation);
    switch (t.kind) {
      case TimerKind::kLoginDeadline:
        if (c != nullptr && !c->closing && c->state != Client::State::kReady) {
          const char* stage = c->state == Client::State::kConnecting ? "connecting"
                              : c->state == Client::State::kPreparing ? "waiting for the Parse of --prepared"
                              : c->authenticated ? "waiting for ReadyForQuery after AuthenticationOk"
                                                 : "waiting for authentication";
          FailLogin(c, absl::StrCat("login not done within --connect-timeout ", o_.connect_timeout, " s (", stage, ")"));
        }
        break;
      case TimerKind::kRefill:
        if (c != nullptr) {
          c->refill_timer = false;
          Refill(c);
        }
        break;
      case TimerKind::kRetry:
        --retry_pending_;
        break;
      case TimerKind::kPump:
        pump_timer_ = false;
        break;
    }
  }
}

// --- Logins ----------------------------------------------------------------------------------

bool Worker::TakeRateSlot(int64_t* due) {
  if (interval_ns_ == 0) {
    *due = now_;
    return true;
  }
  if (next_slot_ > static_cast<double>(now_)) return false;
  // Open loop: a request is timed from when it was due, so time spent waiting for a free
  // client counts as latency (no coordinated omission).
  *due = static_cast<int64_t>(next_slot_);
  next_slot_ += interval_ns_;
  return true;
}

void Worker::Pump() {
  if (stopping_) return;
  const int64_t window = plan_.login_window;
  switch (o_.mode) {
    case Mode::kIdle:
      while (started_ < plan_.clients && logging_in_ < window) StartLogin();
      break;
    case Mode::kQuery:
      while (logging_in_ + ready_ + retry_pending_ < plan_.clients && logging_in_ < window) StartLogin();
      break;
    case Mode::kLogins:
      for (int64_t due; logging_in_ + retry_pending_ < plan_.clients && (plan_.count == 0 || issued_ < plan_.count);) {
        if (!TakeRateSlot(&due)) {
          if (!pump_timer_) Schedule(static_cast<int64_t>(next_slot_), TimerKind::kPump);
          pump_timer_ = true;
          break;
        }
        ++issued_;
        StartLogin();
      }
      break;
  }
}

void Worker::StartLogin() {
  const int64_t n = started_++;
  ++logging_in_;
  const bool first_wave = o_.mode == Mode::kQuery && n < plan_.clients;
  const int family = o_.addr.ss_family;
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    LoginFailed(first_wave, ErrnoText("socket", -errno));
    return;
  }
  if (family != AF_UNIX) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  if (o_.source_addresses > 1) {
    // Each source address 127.0.0.x has its own ephemeral ports. IP_BIND_ADDRESS_NO_PORT
    // leaves the port to connect(), which picks it by the whole 4-tuple, not by the address.
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    sockaddr_in source{};
    source.sin_family = AF_INET;
    const int64_t client = plan_.first_client + n % std::max<int64_t>(plan_.clients, 1);
    source.sin_addr.s_addr = htonl(INADDR_LOOPBACK + static_cast<uint32_t>(client % o_.source_addresses));
    if (bind(fd, reinterpret_cast<sockaddr*>(&source), sizeof source) != 0) {
      const int err = errno;
      close(fd);
      LoginFailed(first_wave, ErrnoText("bind", -err));
      return;
    }
  }
  Client* c = conns_->Open(fd);
  c->first_wave = first_wave;
  c->login_start_ns = now_;
  if (o_.mode == Mode::kQuery) c->starts = std::make_unique<int64_t[]>(o_.pipeline);
  conns_->Connect(c, reinterpret_cast<const sockaddr*>(&o_.addr), o_.addr_len);
  Schedule(now_ + static_cast<int64_t>(o_.connect_timeout * 1e9), TimerKind::kLoginDeadline, c);
}

void Worker::OnConnected(Client* c, int res) {
  if (res < 0) {
    FailLogin(c, ErrnoText("connect", res));
    return;
  }
  c->state = Client::State::kLogin;
  conns_->ArmRecv(c);
  c->out.append(startup_);
  conns_->Flush(c);
}

void Worker::EndLogin(bool first_wave) {
  --logging_in_;
  if (first_wave) --first_pending_;
}

void Worker::LoginFailed(bool first_wave, absl::string_view message) {
  if (!message.empty()) stats_->RecordError("", message);
  Bump(stats_->login_failures);
  EndLogin(first_wave);
  if (o_.mode == Mode::kLogins) ++completed_;
  if (o_.mode != Mode::kIdle && !stopping_) {
    // Replaced after a pause, so that a server refusing everyone is not hammered in a loop.
    ++retry_pending_;
    Schedule(now_ + (o_.mode == Mode::kLogins ? 10'000'000 : 100'000'000), TimerKind::kRetry);
  }
}

void Worker::FailLogin(Client* c, absl::string_view message) {
  LoginFailed(c->first_wave, message);
  conns_->Close(c);
}

bool Worker::OnAuthentication(Client* c, absl::Span<const uint8_t> body) {
  proto::AuthRequest request;
  if (proto::ParseAuthentication(body, &request) != proto::ParseError::kOk) {
    FailLogin(c, "protocol error: malformed Authentication message");
    return false;
  }
  // The server picks the method; we answer whatever it asks for that we can.
  auto need_password = [&] {
    if (!o_.password.empty()) return true;
    FailLogin(c, "the server asked for a password and --password is empty");
    return false;
  };
  auto scram_failed = [&](proto::ScramResult r) {
    FailLogin(c, absl::StrCat("SCRAM: ", proto::ScramResultName(r), " ", c->scram->error_detail()));
    return false;
  };
  switch (request.code) {
    case proto::AuthCode::kOk:
      c->scram.reset();
      c->authenticated = true;
      return true;  // logged in; ParameterStatus and BackendKeyData follow, then ReadyForQuery
    case proto::AuthCode::kCleartextPassword:
      if (!need_password()) return false;
      proto::AppendPasswordMessage(&c->out, o_.password);
      return true;
    case proto::AuthCode::kMd5Password:
      if (!need_password()) return false;
      proto::AppendPasswordMessage(&c->out, proto::Md5ClientResponse(o_.password, o_.user, request.md5_salt));
      return true;
    case proto::AuthCode::kSasl: {
      if (!need_password()) return false;
      if (std::find(request.mechanisms.begin(), request.mechanisms.end(), proto::kScramMechanism) == request.mechanisms.end()) {
        FailLogin(c, "the server offers no SASL mechanism we speak (SCRAM-SHA-256)");
        return false;
      }
      // The shared key cache: PBKDF2 runs once for the password, not once per login.
      c->scram = std::make_unique<proto::ScramClient>(
          proto::ScramClient::WithPassword(o_.password, proto::GenerateScramNonce(), scram_cache_));
      std::string first;
      if (proto::ScramResult r = c->scram->ClientFirst(&first); r != proto::ScramResult::kOk) return scram_failed(r);
      proto::AppendSaslInitialResponse(&c->out, proto::kScramMechanism, first);
      return true;
    }
    case proto::AuthCode::kSaslContinue: {
      std::string final_message;
      if (!c->scram) break;
      if (proto::ScramResult r = c->scram->HandleServerFirst(request.data, &final_message); r != proto::ScramResult::kOk) {
        return scram_failed(r);
      }
      proto::AppendSaslResponse(&c->out, final_message);
      return true;
    }
    case proto::AuthCode::kSaslFinal:
      if (!c->scram) break;
      if (proto::ScramResult r = c->scram->HandleServerFinal(request.data); r != proto::ScramResult::kOk) return scram_failed(r);
      return true;
    default:
      break;
  }
  FailLogin(c, absl::StrCat("unsupported authentication request ", static_cast<uint32_t>(request.code)));
  return false;
}

// --- Running ---------------------------------------------------------------------------------

void Worker::OnData(Client* c, const uint8_t* data, uint32_t len) {
  now_ = Now();
  tools::StreamStatus status = c->in.Feed(data, len, [&](const tools::Message& m) { return OnMessage(c, m); });
  if (status == tools::StreamStatus::kBadLength || status == tools::StreamStatus::kTooLong) {
    c->state == Client::State::kReady ? Lose(c, "protocol error: bad message length")
                                      : FailLogin(c, "protocol error: bad message length");
  }
  if (c->closing) return;
  if (c->state == Client::State::kReady) Refill(c);
  conns_->Flush(c);
}

bool Worker::OnMessage(Client* c, const tools::Message& m) {
  switch (m.type) {
    case proto::msg::kAuthentication:
      return OnAuthentication(c, m.body);
    case proto::msg::kErrorResponse: {
      proto::ErrorFields fields;
      if (proto::ParseErrorFields(m.body, &fields) != proto::ParseError::kOk) fields.message = "(malformed ErrorResponse)";
      stats_->RecordError(fields.sqlstate, fields.message);
      const absl::string_view severity = fields.severity_nonlocalized.empty() ? fields.severity : fields.severity_nonlocalized;
      if (c->state != Client::State::kReady) {
        FailLogin(c, "");  // the login (or the Parse of --prepared) failed; the error says why
        return false;
      }
      if (severity == proto::severity::kFatal || severity == "PANIC") {
        c->fatal = true;  // the server closes next
        Lose(c, "");
        return false;
      }
      c->failed_request = true;  // ReadyForQuery still ends the request
      return true;
    }
    case proto::msg::kReadyForQuery:
      OnReadyForQuery(c);
      return !c->closing;
    case proto::msg::kCopyInResponse:
    case proto::msg::kCopyOutResponse:
    case proto::msg::kCopyBothResponse:
      c->state == Client::State::kReady ? Lose(c, "COPY is not supported by rb-loadgen")
                                        : FailLogin(c, "COPY is not supported by rb-loadgen");
      return false;
    default:
      // ParameterStatus, BackendKeyData, notices, and the parts of a result: only
      // ReadyForQuery ends a request.
      return true;
  }
}

void Worker::OnReadyForQuery(Client* c) {
  switch (c->state) {
    case Client::State::kConnecting:
      break;
    case Client::State::kLogin:
      Bump(stats_->logins);
      if (o_.mode == Mode::kLogins) {
        EndLogin(c->first_wave);
        ++completed_;
        if (!stopping_) stats_->latency.Record(static_cast<uint64_t>(now_ - c->login_start_ns));
        Finish(c);
      } else if (o_.mode == Mode::kQuery && o_.prepared) {
        c->state = Client::State::kPreparing;
        c->out.append(prepare_);
      } else {
        BecomeReady(c);
      }
      break;
    case Client::State::kPreparing:
      BecomeReady(c);
      break;
    case Client::State::kReady: {
      if (c->in_flight == 0) {
        Lose(c, "protocol error: ReadyForQuery with no request in flight");
        return;
      }
      const int64_t due = c->starts[c->head];
      c->head = static_cast<uint32_t>((c->head + 1) % o_.pipeline);
      --c->in_flight;
      if (!stopping_) {
        ++completed_;
        if (!c->failed_request) {
          Bump(stats_->transactions);
          stats_->latency.Record(static_cast<uint64_t>(std::max<int64_t>(now_ - due, 0)));
        }
      }
      c->failed_request = false;
      if (stopping_ && c->in_flight == 0) Finish(c);
      break;
    }
  }
}

void Worker::BecomeReady(Client* c) {
  EndLogin(c->first_wave);
  c->state = Client::State::kReady;
  ++ready_;
  Refill(c);
}

void Worker::Refill(Client* c) {
  if (o_.mode != Mode::kQuery || stopping_ || window_start_ < 0 || c->closing || c->state != Client::State::kReady) return;
  while (c->in_flight < o_.pipeline && (plan_.count == 0 || issued_ < plan_.count)) {
    int64_t due;
    if (!TakeRateSlot(&due)) {
      if (!c->refill_timer) Schedule(static_cast<int64_t>(next_slot_), TimerKind::kRefill, c);
      c->refill_timer = true;
      break;
    }
    c->starts[(c->head + c->in_flight) % o_.pipeline] = due;
    ++c->in_flight;
    ++issued_;
    c->out.append(request_);
  }
  conns_->Flush(c);
}

void Worker::Lose(Client* c, absl::string_view message) {
  if (!message.empty() && !stopping_) stats_->RecordError("", message);
  issued_ -= c->in_flight;  // never answered: they go out again on another connection
  conns_->Close(c);
  if (o_.mode == Mode::kQuery && !stopping_) {
    ++retry_pending_;
    Schedule(now_ + 100'000'000, TimerKind::kRetry);
  }
}

void Worker::OnPeerClosed(Client* c, int res) {
  // After a FATAL error the close is expected; the error itself was counted.
  std::string why = c->fatal ? "" : res == 0 ? "the server closed the connection" : ErrnoText("connection", res);
  c->state == Client::State::kReady ? Lose(c, why) : FailLogin(c, why);
}

void Worker::Finish(Client* c) {
  proto::AppendTerminate(&c->out);
  conns_->CloseAfterSend(c);
}

void Worker::OnFreed(Client* c) {
  if (c->state == Client::State::kReady) --ready_;
}

}  // namespace rb::loadgen
