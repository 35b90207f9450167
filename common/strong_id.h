// Strong integer ID types so that a layer index can't be passed where a head index is expected.
#pragma once

#include <cstdint>
#include <functional>
#include <ostream>

namespace hipserve::common {

template <typename Tag, typename Rep = int64_t>
class StrongId {
 public:
  constexpr StrongId() = default;
  constexpr explicit StrongId(Rep value) : value_(value) {}
  constexpr Rep value() const { return value_; }
  friend constexpr bool operator==(StrongId a, StrongId b) { return a.value_ == b.value_; }
  friend constexpr bool operator!=(StrongId a, StrongId b) { return a.value_ != b.value_; }
  friend constexpr bool operator<(StrongId a, StrongId b) { return a.value_ < b.value_; }
  friend std::ostream& operator<<(std::ostream& os, StrongId id) { return os << id.value_; }
  template <typename H>
  friend H AbslHashValue(H h, StrongId id) {
    return H::combine(std::move(h), id.value_);
  }

 private:
  Rep value_ = 0;
};

struct SequenceIdTag {};
struct LayerIdTag {};
struct KvHeadIdTag {};
struct PageIdTag {};
using SequenceId = StrongId<SequenceIdTag, uint64_t>;
using LayerId = StrongId<LayerIdTag, int32_t>;
using KvHeadId = StrongId<KvHeadIdTag, int32_t>;
using PageId = StrongId<PageIdTag, int64_t>;

}  // namespace hipserve::common
