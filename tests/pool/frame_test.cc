// The frame codec takes bytes from a worker that may be hostile.
#include "pool/frame.h"

#include <gtest/gtest.h>

namespace corral {
namespace {

TEST(Frame, RoundTripsAcrossArbitrarySplits) {
  std::string stream = encode_frame(FrameType::invoke, "{\"a\":1}") +
                       encode_frame(FrameType::result, "") +
                       encode_frame(FrameType::result, std::string(70000, 'x'));
  for (size_t chunk : {1u, 3u, 8u, 1000u, 100000u}) {
    FrameDecoder decoder;
    std::vector<Frame> frames;
    for (size_t i = 0; i < stream.size(); i += chunk) {
      decoder.append(std::string_view(stream).substr(i, chunk));
      while (auto frame = decoder.next()) frames.push_back(*frame);
    }
    ASSERT_EQ(frames.size(), 3u) << chunk;
    EXPECT_EQ(frames[0].type, FrameType::invoke);
    EXPECT_EQ(frames[0].payload, "{\"a\":1}");
    EXPECT_EQ(frames[1].payload, "");
    EXPECT_EQ(frames[2].payload.size(), 70000u);
    EXPECT_EQ(decoder.buffered_bytes(), 0u);
  }
}

TEST(Frame, HeaderLayoutIsBigEndianLength) {
  auto bytes = encode_frame(FrameType::result, std::string(0x0102, 'x'));
  EXPECT_EQ(bytes.substr(0, 8), std::string("CR\x01\x02\x00\x00\x01\x02", 8));
}

void expect_rejected(const std::string& bytes, const std::string& mentions, uint32_t max = 1024) {
  FrameDecoder decoder(max);
  decoder.append(bytes);
  try {
    decoder.next();
    ADD_FAILURE() << "accepted";
  } catch (const FrameError& error) {
    EXPECT_NE(std::string(error.what()).find(mentions), std::string::npos) << error.what();
  }
  EXPECT_THROW(decoder.next(), FrameError);  // a failed stream stays failed
}

TEST(Frame, RejectsBadMagicVersionTypeAndSize) {
  expect_rejected(std::string("XR\x01\x02\x00\x00\x00\x00", 8), "magic");
  expect_rejected(std::string("CR\x07\x02\x00\x00\x00\x00", 8), "version 7");
  expect_rejected(std::string("CR\x01\x09\x00\x00\x00\x00", 8), "type 9");
  // The length is checked before any payload arrives, so nothing of that size is allocated.
  expect_rejected(std::string("CR\x01\x02\xff\xff\xff\xff", 8), "exceeds the maximum of 1024");
  expect_rejected(encode_frame(FrameType::result, std::string(1025, 'x')), "exceeds");
}

TEST(Frame, WaitsForCompleteFrames) {
  FrameDecoder decoder;
  auto bytes = encode_frame(FrameType::result, "hello");
  decoder.append(bytes.substr(0, 7));
  EXPECT_FALSE(decoder.next());
  decoder.append(bytes.substr(7));
  auto frame = decoder.next();
  ASSERT_TRUE(frame);
  EXPECT_EQ(frame->payload, "hello");
}

}  // namespace
}  // namespace corral
