// Registers corosync membership (Membership, corosyncNodelist, corosyncAvailable) on the
// addon's exports; see binding.cc.
#pragma once
#include <napi.h>

namespace lowcomms::membership {
void Init(Napi::Env env, Napi::Object exports);
}
