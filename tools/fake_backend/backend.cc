#include "tools/fake_backend/backend.h"

#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "proto/startup.h"

namespace rb::fake_backend {
namespace {

constexpr uint8_t kOpAccept = tools::kOpFirstTool;
constexpr uint8_t kOpDoorbell = tools::kOpFirstTool + 1;
constexpr uint8_t kOpIgnore = tools::kOpFirstTool + 2;
// 16 KiB buffers: a chunk of pipelined requests fits, and every chunk gets one reply send.
constexpr uint32_t kBufferCount = 1024;
constexpr uint32_t kBufferSize = 16 * 1024;
// PostgreSQL accepts messages up to 1 GB; a benchmark double has no use for more than this.
constexpr uint32_t kMaxMessageLength = 64 << 20;
constexpr int64_t kWaitNs = 200'000'000;  // how soon a thread notices the stop flag

using proto::msg::kBind;
using proto::msg::kClose;
using proto::msg::kDescribe;
using proto::msg::kExecute;
using proto::msg::kParse;
using proto::msg::kQuery;
using proto::msg::kSync;
using proto::msg::kTerminate;

void AppendError(std::string* out, absl::string_view severity, absl::string_view sqlstate,
                 absl::string_view message) {
  proto::ErrorFields fields;
  fields.severity = fields.severity_nonlocalized = severity;
  fields.sqlstate = sqlstate;
  fields.message = message;
  proto::AppendErrorResponse(out, fields);
}

void AppendBodiless(std::string* out, uint8_t type) {
  proto::MessageWriter w(out);
  w.Begin(type);
  w.End();
}

}  // namespace

void Replies::Build(int64_t rows, int64_t row_bytes) {
  proto::ColumnType type = row_bytes > 0 ? proto::ColumnType::kText : proto::ColumnType::kInt4;
  proto::AppendRowDescription(&row_description, {proto::Column{"?column?", type}});
  const std::string value = row_bytes > 0 ? std::string(static_cast<size_t>(row_bytes), 'x') : "1";
  for (int64_t i = 0; i < rows; ++i) proto::AppendDataRow(&rows_and_complete, {absl::string_view(value)});
  proto::AppendCommandComplete(&rows_and_complete, absl::StrCat("SELECT ", rows));
}

bool BackendThread::Run() {
  absl::StatusOr<tools::ThreadRing> ring = tools::CreateThreadRing(shared_->features, kBufferCount, kBufferSize);
  if (!ring.ok()) {
    fprintf(stderr, "rb-fake-backend: thread %d: %s\n", index_, std::string(ring.status().message()).c_str());
    shared_->ring_fds[index_].store(-1);
    shared_->rings_ready.fetch_add(1);
    return false;
  }
  ring_ = std::move(*ring);
  conns_ = std::make_unique<tools::ConnSet<Session>>(ring_.ring.get(), ring_.buffers.get());
  if (getrandom(&rng_, sizeof rng_, 0) != sizeof rng_ || rng_ == 0) rng_ = 0x9e3779b97f4a7c15ull + index_;
  shared_->ring_fds[index_].store(ring_.ring->fd());
  shared_->rings_ready.fetch_add(1);

  for (uint32_t i = 0; i < tcp_fds_.size(); ++i) ArmAccept(i);
  if (index_ == 0 && shared_->unix_fd >= 0) {
    // Unix connections are dealt to every thread: wait until every ring can be rung.
    while (shared_->rings_ready.load() < static_cast<int>(shared_->mailboxes.size())) std::this_thread::yield();
    ArmAccept(static_cast<uint32_t>(tcp_fds_.size()));
  }
  while (!shared_->stop.load(std::memory_order_relaxed)) {
    int ret = ring_.ring->SubmitAndWait(kWaitNs);
    if (ret < 0) {
      fprintf(stderr, "rb-fake-backend: thread %d: io_uring_enter: %s\n", index_, strerror(-ret));
      return false;
    }
    ring_.ring->DrainCompletions([this](const io_uring_cqe& cqe) { Dispatch(cqe); });
    conns_->AfterDrain(*this);
  }
  return true;
}

void BackendThread::Dispatch(const io_uring_cqe& cqe) {
  if (conns_->Dispatch(cqe, *this)) return;
  const netio::Tag tag = netio::Tag::Unpack(cqe.user_data);
  if (tag.op == kOpAccept) {
    if (cqe.res >= 0) {
      tag.slot < tcp_fds_.size() ? Adopt(cqe.res) : HandOut(cqe.res);
    } else if (cqe.res != -ECANCELED) {
      fprintf(stderr, "rb-fake-backend: accept: %s\n", strerror(-cqe.res));
    }
    if (!(cqe.flags & IORING_CQE_F_MORE)) ArmAccept(tag.slot);
  } else if (tag.op == kOpDoorbell) {
    shared_->mailboxes[index_]->Drain([this](uint32_t, const netio::MailMessage& m) { Adopt(static_cast<int>(m.arg32)); });
  }
}

void BackendThread::ArmAccept(uint32_t index) {
  const int fd = index < tcp_fds_.size() ? tcp_fds_[index] : shared_->unix_fd;
  io_uring_sqe* sqe = ring_.ring->Sqe();
  io_uring_prep_multishot_accept(sqe, fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, netio::Tag{kOpAccept, 0, index}.Pack());
}

void BackendThread::Adopt(int fd) { conns_->ArmRecv(conns_->Open(fd)); }

void BackendThread::HandOut(int fd) {
  const uint32_t threads = static_cast<uint32_t>(shared_->mailboxes.size());
  const uint32_t target = next_thread_++ % threads;
  netio::Mailbox& mailbox = *shared_->mailboxes[target];
  const int target_ring = shared_->ring_fds[target].load();
  // A plain fd belongs to the whole process: the other thread just starts using it.
  if (target == static_cast<uint32_t>(index_) || target_ring < 0 ||
      !mailbox.Push(index_, netio::MailMessage{0, static_cast<uint32_t>(fd), 0, nullptr})) {
    Adopt(fd);
    return;
  }
  if (mailbox.ClaimDoorbell()) {
    io_uring_sqe* sqe = ring_.ring->Sqe();
    io_uring_prep_msg_ring(sqe, target_ring, 0, netio::Tag{kOpDoorbell, 0, 0}.Pack(), 0);
    io_uring_sqe_set_data64(sqe, netio::Tag{kOpIgnore, 0, 0}.Pack());
  }
}

void BackendThread::OnData(Session* s, const uint8_t* data, uint32_t len) {
  tools::StreamStatus status = s->in.Feed(data, len, [&](const tools::Message& m) {
    return s->logged_in ? OnMessage(s, m) : OnStartup(s, m);
  });
  if (status == tools::StreamStatus::kBadLength || status == tools::StreamStatus::kTooLong) {
    Fatal(s, proto::sqlstate::kProtocolViolation, "invalid message length");
  }
  // Every reply to this chunk leaves in one send.
  conns_->Flush(s);
}

bool BackendThread::OnStartup(Session* s, const tools::Message& m) {
  proto::StartupPacket packet;
  proto::StartupError error = proto::ParseStartupPacket(m.whole.data(), static_cast<uint32_t>(m.whole.size()), &packet);
  if (error != proto::StartupError::kOk) {
    if (proto::StartupErrorNotifiesClient(error)) {
      Fatal(s, proto::StartupErrorSqlState(error), proto::StartupErrorMessage(error, packet));
    } else {
      conns_->Close(s);
    }
    return false;
  }
  switch (packet.kind()) {
    case proto::StartupKind::kSslRequest:
    case proto::StartupKind::kGssEncRequest:
      proto::AppendEncryptionRefused(&s->out);  // go on in plaintext, or give up
      return true;
    case proto::StartupKind::kCancelRequest:
      conns_->Close(s);  // accepted and ignored: nothing here runs long enough to cancel
      return false;
    case proto::StartupKind::kStartupMessage:
      break;
  }
  if (packet.NeedsNegotiation()) packet.AppendNegotiateProtocolVersion(&s->out);
  proto::AppendAuthenticationOk(&s->out);  // trust: anyone may log in
  for (int i = 0; i < kParamCount; ++i) {
    // Reported parameters given in the startup packet take effect, as in PostgreSQL.
    std::optional<absl::string_view> given = packet.Find(kReportedParams[i].name);
    absl::string_view value = i == kSessionAuthorization           ? packet.user()
                              : given && kReportedParams[i].settable ? *given
                                                                     : kReportedParams[i].default_value;
    Session::Param& p = s->params[i];
    p.current = p.session = p.at_begin = p.startup = p.reported = std::string(value);
    proto::AppendParameterStatus(&s->out, kReportedParams[i].name, value);
  }
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  const uint32_t pid = (static_cast<uint32_t>(index_ + 1) << 22) | (++key_counter_ & 0x3fffff);
  proto::AppendBackendKeyData(&s->out, proto::BackendKey{pid, static_cast<uint32_t>(rng_)});
  proto::AppendReadyForQuery(&s->out, proto::kTxnIdle);
  s->logged_in = true;
  s->in.SetMode(proto::AssemblerMode::kTyped, kMaxMessageLength);
  return true;
}

bool BackendThread::OnMessage(Session* s, const tools::Message& m) {
  // After an error in an extended-protocol batch, PostgreSQL discards everything up to the Sync.
  if (s->skip_to_sync && m.type != kSync && m.type != kTerminate) return true;
  proto::BodyReader r(m.body);
  absl::string_view name, text;
  uint8_t kind = 0;
  uint16_t count = 0;
  uint32_t max_rows = 0;
  auto malformed = [&] {
    Fatal(s, proto::sqlstate::kProtocolViolation, absl::StrCat("invalid message format (type '", std::string(1, static_cast<char>(m.type)), "')"));
    return false;
  };
  auto extended_error = [&](absl::string_view sqlstate, absl::string_view message) {
    Error(s, sqlstate, message);
    s->skip_to_sync = true;
    return true;
  };
  switch (m.type) {
    case kQuery:
      if (proto::ParseQuery(m.body, &text) != proto::ParseError::kOk) return malformed();
      RunQuery(s, text);
      return true;
    case kParse: {
      if (!r.ReadCString(&name) || !r.ReadCString(&text) || !r.ReadInt16(&count)) return malformed();
      Session::Statement statement{ClassifyStatement(text), std::max<int>(count, CountParameters(text))};
      if (name.empty()) {
        s->unnamed_statement = std::move(statement);
      } else if (!s->statements.try_emplace(name, std::move(statement)).second) {
        return extended_error("42P05", absl::StrCat("prepared statement \"", name, "\" already exists"));
      }
      AppendBodiless(&s->out, proto::msg::kParseComplete);
      return true;
    }
    case kBind: {
      if (!r.ReadCString(&name) || !r.ReadCString(&text)) return malformed();
      const Session::Statement* statement = FindStatement(s, text);
      if (statement == nullptr) {
        return extended_error("26000", absl::StrCat("prepared statement \"", text, "\" does not exist"));
      }
      if (name.empty()) {
        s->unnamed_portal = statement->command;
      } else {
        s->portals[name] = statement->command;
      }
      AppendBodiless(&s->out, proto::msg::kBindComplete);
      return true;
    }
    case kDescribe:
      if (!r.ReadByte(&kind) || !r.ReadCString(&name)) return malformed();
      if (kind == 'S') {
        const Session::Statement* statement = FindStatement(s, name);
        if (statement == nullptr) {
          return extended_error("26000", absl::StrCat("prepared statement \"", name, "\" does not exist"));
        }
        // Every parameter is described as text (OID 25): there is no type inference here.
        proto::MessageWriter w(&s->out);
        w.Begin(proto::msg::kParameterDescription);
        w.AddInt16(static_cast<uint16_t>(statement->param_count));
        for (int i = 0; i < statement->param_count; ++i) w.AddInt32(25);
        w.End();
        Describe(s, statement->command);
      } else {
        const Command* portal = FindPortal(s, name);
        if (portal == nullptr) return extended_error("34000", absl::StrCat("portal \"", name, "\" does not exist"));
        Describe(s, *portal);
      }
      return true;
    case kExecute: {
      if (!r.ReadCString(&name) || !r.ReadInt32(&max_rows)) return malformed();
      const Command* portal = FindPortal(s, name);
      if (portal == nullptr) return extended_error("34000", absl::StrCat("portal \"", name, "\" does not exist"));
      // The row limit is ignored: a portal always runs to completion (no PortalSuspended).
      if (!Execute(s, *portal, /*describe=*/false)) s->skip_to_sync = true;
      return true;
    }
    case kSync:
      s->skip_to_sync = false;
      SendReady(s);
      return true;
    case proto::msg::kFlush:  // every reply is sent at the end of the chunk anyway
      return true;
    case kClose:
      if (!r.ReadByte(&kind) || !r.ReadCString(&name)) return malformed();
      if (kind == 'S') {
        name.empty() ? s->unnamed_statement.reset() : void(s->statements.erase(name));
      } else {
        name.empty() ? s->unnamed_portal.reset() : void(s->portals.erase(name));
      }
      AppendBodiless(&s->out, proto::msg::kCloseComplete);
      return true;
    case kTerminate:
      conns_->CloseAfterSend(s);  // what was answered before it still goes out
      return false;
    case proto::msg::kFunctionCall:
      Error(s, proto::sqlstate::kFeatureNotSupported, "rb-fake-backend does not support function calls");
      SendReady(s);
      return true;
    case proto::msg::kCopyData:
    case proto::msg::kCopyDone:
    case proto::msg::kCopyFail:
      return true;  // outside COPY, PostgreSQL ignores these too
    default:
      Fatal(s, proto::sqlstate::kProtocolViolation, absl::StrCat("invalid frontend message type ", m.type));
      return false;
  }
}

Session::Statement* BackendThread::FindStatement(Session* s, absl::string_view name) {
  if (name.empty()) return s->unnamed_statement ? &*s->unnamed_statement : nullptr;
  auto it = s->statements.find(name);
  return it == s->statements.end() ? nullptr : &it->second;
}

Command* BackendThread::FindPortal(Session* s, absl::string_view name) {
  if (name.empty()) return s->unnamed_portal ? &*s->unnamed_portal : nullptr;
  auto it = s->portals.find(name);
  return it == s->portals.end() ? nullptr : &it->second;
}

void BackendThread::Describe(Session* s, const Command& c) {
  if (c.kind == CommandKind::kSelect) {
    s->out.append(shared_->replies.row_description);
  } else {
    AppendBodiless(&s->out, proto::msg::kNoData);
  }
}

void BackendThread::RunQuery(Session* s, absl::string_view sql) {
  // A simple Query may hold several statements: each is answered in turn, and an error skips
  // the rest. Only blanks: EmptyQueryResponse.
  bool any = false, ok = true;
  ForEachStatement(sql, [&](absl::string_view statement) {
    if (!ok || IsBlank(statement)) return;
    any = true;
    ok = Execute(s, ClassifyStatement(statement), /*describe=*/true);
  });
  if (!any) proto::AppendEmptyQueryResponse(&s->out);
  SendReady(s);
}

bool BackendThread::Execute(Session* s, const Command& c, bool describe) {
  using K = CommandKind;
  std::string* out = &s->out;
  if (s->txn == proto::kTxnFailed && c.kind != K::kCommit && c.kind != K::kRollback) {
    Error(s, "25P02", "current transaction is aborted, commands ignored until end of transaction block");
    return false;
  }
  auto reset_all = [s] {
    for (int i = 0; i < kParamCount; ++i) s->params[i].current = s->params[i].session = s->params[i].startup;
  };
  // At the end of a block, the session values stand (COMMIT) or those of BEGIN come back.
  auto end_block = [s](bool commit) {
    for (Session::Param& p : s->params) {
      if (!commit) p.session = p.at_begin;
      p.current = p.session;
    }
    s->txn = proto::kTxnIdle;
  };
  switch (c.kind) {
    case K::kSelect:
      if (describe) out->append(shared_->replies.row_description);
      out->append(shared_->replies.rows_and_complete);
      return true;
    case K::kEmpty:
      proto::AppendEmptyQueryResponse(out);
      return true;
    case K::kSet:
    case K::kSetLocal:
    case K::kReset:
      if (c.param >= 0) {
        if (!kReportedParams[c.param].settable) {
          Error(s, "55P02", absl::StrCat("parameter \"", kReportedParams[c.param].name, "\" cannot be changed"));
          return false;
        }
        Session::Param& p = s->params[c.param];
        const std::string value = c.kind == K::kReset ? p.startup : c.value;
        // SET LOCAL changes only the current value, and outside a block nothing at all.
        if (c.kind != K::kSetLocal) p.session = value;
        if (c.kind != K::kSetLocal || s->txn == proto::kTxnInBlock) p.current = value;
      }
      proto::AppendCommandComplete(out, c.kind == K::kReset ? "RESET" : "SET");
      return true;
    case K::kResetAll:
      reset_all();
      proto::AppendCommandComplete(out, "RESET");
      return true;
    case K::kDiscardAll:
      if (s->txn != proto::kTxnIdle) {
        Error(s, "25001", "DISCARD ALL cannot run inside a transaction block");
        return false;
      }
      reset_all();
      s->statements.clear();
      s->portals.clear();
      proto::AppendCommandComplete(out, "DISCARD ALL");
      return true;
    case K::kBegin:
      if (s->txn == proto::kTxnIdle) {
        for (Session::Param& p : s->params) p.at_begin = p.session;
        s->txn = proto::kTxnInBlock;
      }
      proto::AppendCommandComplete(out, "BEGIN");
      return true;
    case K::kCommit: {
      // COMMIT of a failed block rolls back, and says so.
      const bool failed = s->txn == proto::kTxnFailed;
      if (s->txn != proto::kTxnIdle) end_block(!failed);
      proto::AppendCommandComplete(out, failed ? "ROLLBACK" : "COMMIT");
      return true;
    }
    case K::kRollback:
      if (s->txn != proto::kTxnIdle) end_block(false);
      proto::AppendCommandComplete(out, "ROLLBACK");
      return true;
    case K::kDeallocate:
      if (s->statements.erase(c.value) == 0) {
        Error(s, "26000", absl::StrCat("prepared statement \"", c.value, "\" does not exist"));
        return false;
      }
      proto::AppendCommandComplete(out, "DEALLOCATE");
      return true;
    case K::kDeallocateAll:
      s->statements.clear();
      proto::AppendCommandComplete(out, "DEALLOCATE ALL");
      return true;
    case K::kUtility:
      proto::AppendCommandComplete(out, c.tag);
      return true;
  }
  return true;
}

void BackendThread::SendReady(Session* s) {
  // PostgreSQL 14+ reports changed parameters once, just before ReadyForQuery.
  for (int i = 0; i < kParamCount; ++i) {
    Session::Param& p = s->params[i];
    if (p.current == p.reported) continue;
    p.reported = p.current;
    proto::AppendParameterStatus(&s->out, kReportedParams[i].name, p.current);
  }
  proto::AppendReadyForQuery(&s->out, s->txn);
}

void BackendThread::Error(Session* s, absl::string_view sqlstate, absl::string_view message) {
  AppendError(&s->out, proto::severity::kError, sqlstate, message);
  if (s->txn == proto::kTxnInBlock) s->txn = proto::kTxnFailed;
}

void BackendThread::Fatal(Session* s, absl::string_view sqlstate, absl::string_view message) {
  AppendError(&s->out, proto::severity::kFatal, sqlstate, message);
  conns_->CloseAfterSend(s);
}

}  // namespace rb::fake_backend
