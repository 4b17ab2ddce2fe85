// What the compiled modules (_soap_kernel.cpp, _denoiser_kernel.cpp) share.
//
// SPDX-License-Identifier: GPL-2.0-or-later

#pragma once

// The hot loops are compiled twice, plain x86-64 and with AVX+FMA, and the loader picks the one this CPU
// runs (GCC function multiversioning); on other compilers or CPUs there is one portable version.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ICEPHASE_HOT __attribute__((target_clones("fma", "default")))
#else
#define ICEPHASE_HOT
#endif
