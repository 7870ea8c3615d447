#include "iea/state/redis_reply.hpp"

namespace iea::state {
namespace {

class RedisCategory final : public boost::system::error_category {
  public:
    [[nodiscard]] const char* name() const noexcept override { return "redis"; }

    [[nodiscard]] std::string message(int code) const override {
        switch (static_cast<RedisErrc>(code)) {
            case RedisErrc::kUnavailable:
                return "Redis is unavailable";
            case RedisErrc::kServerError:
                return "Redis answered with an error";
            case RedisErrc::kUnexpectedReply:
                return "Redis answered in an unexpected shape";
        }
        return "unknown Redis error";
    }
};

}  // namespace

const boost::system::error_category& redis_category() noexcept {
    static const RedisCategory category;
    return category;
}

boost::system::error_code make_error_code(RedisErrc code) noexcept {
    return {static_cast<int>(code), redis_category()};
}

bool RedisReply::is_error_code(std::string_view code) const {
    if (kind != Kind::kError || !text.starts_with(code)) return false;
    return text.size() == code.size() || text[code.size()] == ' ';
}

}  // namespace iea::state
