# Writes OUTPUT (the header metrics/build_commit.h) with the version and the git commit of
# SOURCE_DIR, and rewrites it only when they changed, so that a build after a commit recompiles
# one small file and a build without one recompiles nothing.
execute_process(COMMAND git -C "${SOURCE_DIR}" rev-parse --short=12 HEAD
                OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE
                RESULT_VARIABLE failed ERROR_QUIET)
if(failed OR commit STREQUAL "")
  set(commit "unknown")
endif()
execute_process(COMMAND git -C "${SOURCE_DIR}" status --porcelain --untracked-files=no
                OUTPUT_VARIABLE changes RESULT_VARIABLE failed ERROR_QUIET)
if(NOT failed AND NOT changes STREQUAL "" AND NOT commit STREQUAL "unknown")
  set(commit "${commit}-modified")
endif()
set(text "// Written by src/metrics/build_commit.cmake at build time.\n#pragma once\nnamespace corral::metrics {\ninline constexpr const char* kBuildVersion = \"${VERSION}\";\ninline constexpr const char* kBuildCommit = \"${commit}\";\n}  // namespace corral::metrics\n")
if(EXISTS "${OUTPUT}")
  file(READ "${OUTPUT}" old)
endif()
if(NOT old STREQUAL text)
  file(WRITE "${OUTPUT}" "${text}")
endif()
