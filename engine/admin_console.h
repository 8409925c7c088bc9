// The admin console: the virtual database "pgbouncer", spoken to with the simple query
// protocol. SHOW commands gather every worker's part through mailbox messages, so the
// numbers are the process's, not one worker's.
#pragma once

#include <cstdint>
#include <string>

#include "netio/mailbox.h"

namespace rb::engine {

class Worker;
struct ClientConn;

class AdminConsole {
 public:
  explicit AdminConsole(Worker* worker) : worker_(worker) {}

  // The client logged in to "pgbouncer": send the welcome.
  void Start(ClientConn* c, const std::string& user);
  // Bytes from an admin client.
  void OnBytes(ClientConn* c, const uint8_t* data, uint32_t len);
  void OnMail(const netio::MailMessage& m);
  void OnClose(ClientConn* c);

 private:
  void HandleQuery(ClientConn* c, const std::string& sql);
  Worker* worker_;
};

}  // namespace rb::engine
