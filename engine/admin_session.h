// One admin console client's state (ClientConn::admin), shared by the admin_*.cc files.
#pragma once

#include <string>

#include "engine/admin_request.h"
#include "proto/message_assembler.h"

namespace rb::engine {

// The longest admin message we assemble. PgBouncer drops a console client whose query does not
// fit its packet buffer; we answer any query up to this size with the usual errors instead, so
// the console stays usable.
inline constexpr uint32_t kMaxAdminMessage = 1 << 20;

// It answers one query at a time, in order: bytes that come while a query is out on the other
// workers (or with the control thread) wait in `backlog`.
struct AdminSession {
  AdminSession() : assembler(proto::AssemblerMode::kTyped, kMaxAdminMessage) {}
  proto::MessageAssembler assembler;
  std::string user;
  bool admin = false;  // admin_users or the own-uid unix login: everything; else SHOW only
  bool busy = false;
  std::string backlog;
  // PAUSE, SUSPEND or WAIT_CLOSE waiting for servers to go.
  bool waiting = false;
  AdminOp wait_op = AdminOp::kPauseCount;
  std::string wait_db;
  bool count_in_flight = false;
  bool suspended = false;  // this session's SUSPEND is in force
};

}  // namespace rb::engine
