// The store's schema history. Migration i (counting from 1) takes a database from schema version
// i - 1 to i; the version a database is at lives in its PRAGMA user_version.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace corral::store {

// Never edit or reorder an entry once released: databases in the field have already run it. Change
// the schema by appending a new one.
const std::vector<std::string_view>& migrations();

inline int64_t latest_schema_version() { return static_cast<int64_t>(migrations().size()); }

}  // namespace corral::store
