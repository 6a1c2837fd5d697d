/* err: names and messages of the error codes. */
#include "err.h"

struct err_text {
    const char *name;
    const char *message;
};

static const struct err_text err_texts[PC_ERR__COUNT] = {
    [PC_OK] = {"PC_OK", "success"},
    [PC_ERR_NOMEM] = {"PC_ERR_NOMEM", "out of memory"},
    [PC_ERR_INVALID] = {"PC_ERR_INVALID", "invalid argument"},
    [PC_ERR_TOO_BIG] = {"PC_ERR_TOO_BIG", "input exceeds its size limit"},
    [PC_ERR_PROTOCOL] = {"PC_ERR_PROTOCOL", "protocol error"},
    [PC_ERR_TRUNCATED] = {"PC_ERR_TRUNCATED", "input is incomplete"},
    [PC_ERR_NOT_FOUND] = {"PC_ERR_NOT_FOUND", "not found"},
    [PC_ERR_EXISTS] = {"PC_ERR_EXISTS", "already exists"},
    [PC_ERR_STALE] = {"PC_ERR_STALE", "a newer version is already stored"},
    [PC_ERR_IO] = {"PC_ERR_IO", "system call failed"},
    [PC_ERR_ZMQ] = {"PC_ERR_ZMQ", "ZeroMQ call failed"},
    [PC_ERR_TIMEOUT] = {"PC_ERR_TIMEOUT", "timed out"},
    [PC_ERR_CLOSED] = {"PC_ERR_CLOSED", "closed"},
};

const char *pc_err_name(pc_err_t err)
{
    if ((unsigned)err >= PC_ERR__COUNT)
        return "PC_ERR_UNKNOWN";
    return err_texts[err].name;
}

const char *pc_err_message(pc_err_t err)
{
    if ((unsigned)err >= PC_ERR__COUNT)
        return "unknown error";
    return err_texts[err].message;
}
