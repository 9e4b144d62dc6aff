// STUB: replaced by the real kernels.
#include "napi_util.h"
void register_attention(napi_env env, napi_value exports) {}
