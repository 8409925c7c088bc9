#include "netio/mailbox.h"

namespace rb::netio {

SpscQueue::SpscQueue(uint32_t capacity_pow2)
    : slots_(new MailMessage[capacity_pow2]), capacity_(capacity_pow2), mask_(capacity_pow2 - 1) {}

Mailbox::Mailbox(uint32_t senders, uint32_t capacity_pow2) {
  queues_.reserve(senders);
  for (uint32_t i = 0; i < senders; ++i) queues_.push_back(std::make_unique<SpscQueue>(capacity_pow2));
}

}  // namespace rb::netio
