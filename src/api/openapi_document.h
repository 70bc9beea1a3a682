// docs/openapi.yaml as built into this binary: what GET /v1/openapi.yaml serves.
#pragma once

#include <string_view>

namespace corral::api {

std::string_view openapi_document();

}  // namespace corral::api
