// The OpenAI wire format without a server: statuses -> HTTP errors, JSON -> GenerateRequest.
// (tests/openai drives the whole path with the official client.)
#include "coordinator/http/openai_protocol.h"

#include <gtest/gtest.h>

namespace hipserve::coordinator::http {
namespace {

TEST(OpenAiProtocolTest, StatusesMapToOpenAiErrors) {
  EXPECT_EQ(ErrorFromStatus(absl::ResourceExhaustedError("queue full"), nullptr).http_status, 429);
  ApiError busy = ErrorFromStatus(absl::UnavailableError("not ready"), nullptr);
  EXPECT_EQ(busy.http_status, 503);
  EXPECT_EQ(busy.type, "service_unavailable");
  ApiError auth = ErrorFromStatus(absl::UnauthenticatedError("bad key"), nullptr);
  EXPECT_EQ(auth.http_status, 401);
  EXPECT_EQ(auth.type, "authentication_error");
  EXPECT_EQ(ErrorFromStatus(absl::NotFoundError("x"), nullptr).http_status, 404);
  EXPECT_EQ(ErrorFromStatus(absl::InternalError("x"), nullptr).http_status, 500);
}

TEST(OpenAiProtocolTest, ValidationMessagesNameTheOpenAiField) {
  OpenAiRequest r;
  r.endpoint = Endpoint::kChatCompletions;
  r.max_tokens_field = "max_completion_tokens";
  ApiError e =
      ErrorFromStatus(absl::InvalidArgumentError("sampling.max_tokens must be > 0, got 0"), &r);
  EXPECT_EQ(e.http_status, 400);
  EXPECT_EQ(e.param, "max_completion_tokens");
  EXPECT_EQ(e.message, "max_completion_tokens must be > 0, got 0");
  e = ErrorFromStatus(absl::InvalidArgumentError("sampling.stop_token_ids[0] = -1 is outside"), &r);
  EXPECT_EQ(e.param, "stop_token_ids");
  e = ErrorFromStatus(absl::InvalidArgumentError("prompt has 9 tokens; the model's maximum"), &r);
  EXPECT_EQ(e.param, "messages");
  EXPECT_EQ(e.message, "prompt has 9 tokens; the model's maximum");
  EXPECT_EQ(ErrorJson(e).find("\"code\":null") != std::string::npos, true) << ErrorJson(e);
}

TEST(OpenAiProtocolTest, ParsesPromptsAndSampling) {
  OpenAiRequest r;
  ASSERT_FALSE(ParseRequest(Endpoint::kCompletions,
                            R"({"model":"m","prompt":[[5,6]],"max_tokens":3,"temperature":0,
                                "stop":"x","seed":7,"top_k":-1,"stream":true,
                                "stream_options":{"include_usage":true}})",
                            &r));
  EXPECT_EQ(r.request.token_ids().ids_size(), 2);
  EXPECT_EQ(r.request.sampling().max_tokens(), 3);
  EXPECT_EQ(r.request.sampling().top_k(), 0);
  EXPECT_EQ(r.request.sampling().stop(0), "x");
  EXPECT_EQ(r.request.sampling().seed(), 7u);
  EXPECT_TRUE(r.stream && r.include_usage);

  OpenAiRequest c;
  ASSERT_FALSE(ParseRequest(Endpoint::kChatCompletions,
                            R"({"model":"m","messages":[{"role":"developer","content":
                                [{"type":"text","text":"a"},{"type":"text","text":"b"}]}]})",
                            &c));
  EXPECT_EQ(c.request.chat().messages(0).role(), "system");
  EXPECT_EQ(c.request.chat().messages(0).content(), "ab");
}

TEST(OpenAiProtocolTest, RefusesWhatItCannotHonour) {
  struct Case {
    const char* body;
    const char* param;
  };
  for (const Case& c :
       {Case{"not json", ""}, Case{R"({"prompt":"x"})", "model"},
        Case{R"({"model":"m"})", "prompt"}, Case{R"({"model":"m","prompt":"x","n":2})", "n"},
        Case{R"({"model":"m","prompt":["a","b"]})", "prompt"},
        Case{R"({"model":"m","prompt":"x","temperature":"hot"})", "temperature"},
        Case{R"({"model":"m","prompt":"x","logit_bias":{"1":5}})", "logit_bias"},
        Case{R"({"model":"m","prompt":"x","stop":[1]})", "stop"}}) {
    OpenAiRequest r;
    std::optional<ApiError> e = ParseRequest(Endpoint::kCompletions, c.body, &r);
    ASSERT_TRUE(e.has_value()) << c.body;
    EXPECT_EQ(e->http_status, 400) << c.body;
    EXPECT_EQ(e->param, c.param) << c.body;
  }
}

}  // namespace
}  // namespace hipserve::coordinator::http
