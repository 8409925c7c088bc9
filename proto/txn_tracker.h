// Knows when a server connection may go back to the pool.
//
// PostgreSQL tells us its transaction status in every ReadyForQuery ('I' idle, 'T' in a
// transaction block, 'E' in a failed block). That alone is not enough with pipelining: a client
// may have sent the next Query, or a Parse/Bind/Execute batch whose Sync has not been sent yet,
// before the previous ReadyForQuery arrives. Releasing the server then would hand half a
// conversation to another client. So we also count requests that the server will answer with a
// ReadyForQuery (Query, Sync, FunctionCall) and note extended-protocol messages sent since the
// last Sync, which the server holds without answering until that Sync comes.
#pragma once

#include <cstdint>

namespace rb::proto {

class TxnTracker {
 public:
  // Call at the type byte of every message the client sends to the server.
  void OnClientMessage(uint8_t type) {
    switch (type) {
      case 'Q':  // simple Query: one ReadyForQuery at the end
      case 'F':  // FunctionCall: likewise
        ++outstanding_;
        break;
      case 'S':  // Sync closes an extended batch and earns one ReadyForQuery
        ++outstanding_;
        unsynced_ = false;
        break;
      case 'P':  // Parse
      case 'B':  // Bind
      case 'D':  // Describe
      case 'E':  // Execute
      case 'C':  // Close
        unsynced_ = true;
        break;
      case 'H':
        // Flush makes the server send what it has produced so far, but closes nothing: a batch
        // before it stays open until its Sync (unsynced_ is already set by that batch). A Flush
        // with nothing pending holds nothing either, so it must not pin the server.
        break;
      default:  // CopyData/CopyDone/CopyFail belong to a request already counted
        break;
    }
  }

  // Call for every ReadyForQuery the server sends, with its status byte.
  void OnReadyForQuery(uint8_t status) {
    if (outstanding_ > 0) --outstanding_;
    status_ = status;
  }

  // The server answered everything it was asked, and is outside any transaction block.
  bool Idle() const { return status_ == 'I' && outstanding_ == 0 && !unsynced_; }

  // Inside BEGIN ... COMMIT (or a failed block) on the server side.
  bool InTransaction() const { return status_ != 'I'; }

  // Waiting for answers: a query is running, or a batch awaits its Sync.
  bool Busy() const { return outstanding_ != 0 || unsynced_; }

  uint8_t status() const { return status_; }
  uint32_t outstanding() const { return outstanding_; }

  void Reset() { *this = TxnTracker{}; }

 private:
  uint32_t outstanding_ = 0;
  uint8_t status_ = 'I';
  bool unsynced_ = false;
};

}  // namespace rb::proto
