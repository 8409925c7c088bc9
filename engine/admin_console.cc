#include "engine/admin_console.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "engine/connection.h"
#include "engine/worker.h"
#include "proto/message_assembler.h"
#include "proto/messages.h"

namespace rb::engine {

struct AdminSession {
  AdminSession() : assembler(proto::AssemblerMode::kTyped, 1 << 20) {}
  proto::MessageAssembler assembler;
  std::string user;
};

namespace {
constexpr const char* kVersion = "PgBouncer 1.25.0 (ringbouncer " RB_VERSION ")";
}

void AdminConsole::Start(ClientConn* c, const std::string& user) {
  c->admin = new AdminSession();
  c->admin->user = user;
  std::string out;
  proto::AppendAuthenticationOk(&out);
  // What PgBouncer tells a console client: it is not PostgreSQL, but a client library needs
  // these to talk at all.
  proto::AppendParameterStatus(&out, "server_version", "1.25.0/bouncer");
  proto::AppendParameterStatus(&out, "client_encoding", "UTF8");
  proto::AppendParameterStatus(&out, "server_encoding", "UTF8");
  proto::AppendParameterStatus(&out, "DateStyle", "ISO");
  proto::AppendParameterStatus(&out, "TimeZone", "GMT");
  proto::AppendParameterStatus(&out, "standard_conforming_strings", "on");
  proto::AppendParameterStatus(&out, "is_superuser", "on");
  proto::AppendBackendKeyData(&out, proto::BackendKey{0, 0});
  proto::AppendReadyForQuery(&out, 'I');
  worker_->buffers_->AppendCopy(c->io.out, out.data(), out.size());
  worker_->SendClient(c);
}

void AdminConsole::OnBytes(ClientConn* c, const uint8_t* data, uint32_t len) {
  AdminSession* a = c->admin;
  if (!a) return;
  uint32_t off = 0;
  while (off < len && c->state == ClientState::kAdmin) {
    proto::AssembleResult r = a->assembler.Feed(data + off, len - off);
    off += r.consumed;
    if (r.status == proto::AssembleStatus::kNeedMore) return;
    if (r.status != proto::AssembleStatus::kReady) {
      worker_->RejectClient(c, proto::BadPacketHeaderMessage(a->assembler.header()), "08P01");
      return;
    }
    uint8_t type = a->assembler.type();
    auto body = a->assembler.body();
    if (type == 'X') {
      worker_->CloseClient(c, "client close request");
      return;
    }
    if (type == 'Q') {
      absl::string_view sql;
      if (proto::ParseQuery(body, &sql) != proto::ParseError::kOk) {
        worker_->RejectClient(c, "bad packet", "08P01");
        return;
      }
      HandleQuery(c, std::string(sql));
      continue;
    }
    if (type == 'P' || type == 'B' || type == 'E' || type == 'D' || type == 'S') {
      std::string out;
      proto::AppendPoolerError(&out, "extended query protocol not supported by admin console", "08P01", false);
      proto::AppendReadyForQuery(&out, 'I');
      worker_->buffers_->AppendCopy(c->io.out, out.data(), out.size());
      worker_->RejectClient(c, "bad packet", "08P01");
      return;
    }
    std::string out;
    proto::AppendPoolerError(&out, absl::StrCat("unsupported packet type for admin console: ", type), "08P01", false);
    worker_->buffers_->AppendCopy(c->io.out, out.data(), out.size());
    worker_->RejectClient(c, "bad packet", "08P01");
    return;
  }
}

void AdminConsole::HandleQuery(ClientConn* c, const std::string& sql) {
  std::string cmd(absl::StripAsciiWhitespace(sql));
  while (!cmd.empty() && (cmd.back() == ';' || absl::ascii_isspace(static_cast<unsigned char>(cmd.back())))) cmd.pop_back();
  std::string upper = absl::AsciiStrToUpper(cmd);
  std::string out;
  if (upper.empty()) {
    proto::AppendEmptyQueryResponse(&out);
  } else if (upper == "SHOW VERSION") {
    proto::Column cols[] = {{"version", proto::ColumnType::kText}};
    proto::AppendRowDescription(&out, cols);
    proto::DataRowWriter row(&out);
    row.AddText(kVersion);
    row.Finish();
    proto::AppendCommandComplete(&out, "SHOW");
  } else {
    proto::AppendPoolerError(&out, absl::StrCat("invalid command '", cmd, "', use SHOW HELP;"), "08P01", false);
  }
  proto::AppendReadyForQuery(&out, 'I');
  worker_->buffers_->AppendCopy(c->io.out, out.data(), out.size());
  worker_->SendClient(c);
}

void AdminConsole::OnMail(const netio::MailMessage&) {}

void AdminConsole::OnClose(ClientConn* c) {
  delete c->admin;
  c->admin = nullptr;
}

}  // namespace rb::engine
