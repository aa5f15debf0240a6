#include "core/cuda_backend.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"

enum { CUDA_ERROR_NO_DEVICE = 100 }; // cudaErrorNoDevice (this file does not include CUDA's headers)

static const lf_cuda_api *loaded_api;
static char unavailable_reason[512] = "CUDA backend not loaded";

static int set_unavailable(const char *why) {
    snprintf(unavailable_reason, sizeof unavailable_reason, "%s", why);
    return lf_error(LF_ECUDA, "CUDA unavailable: %s", unavailable_reason);
}

// 1 when the NVIDIA driver (libcuda.so.1) opens, else 0 with why: "no NVIDIA driver found (...)"
static int driver_present(char *why, size_t size) {
    void *driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (driver == NULL) {
        snprintf(why, size, "no NVIDIA driver found (%s)", dlerror());
        return 0;
    }
    dlclose(driver);
    return 1;
}

int lf_cuda_check_driver(void) {
    char why[448];
    return driver_present(why, sizeof why) ? LF_OK : set_unavailable(why);
}

// Why a loaded kernels library sees no device (device_count returned code, or 0 devices), in
// words: the CUDA runtime says "driver version is insufficient" (cudaErrorInsufficientDriver)
// when there is no driver at all, which is told apart here by trying to open the driver.
static const char *no_device_reason(const lf_cuda_api *api, int code) {
    static char reason[448];
    if (!driver_present(reason, sizeof reason)) return reason;
    if (code == 0 || code == CUDA_ERROR_NO_DEVICE)
        snprintf(reason, sizeof reason, "no CUDA GPU (the NVIDIA driver is installed but reports no device)");
    else
        snprintf(reason, sizeof reason, "%s", api->error_string(code));
    return reason;
}

int lf_cuda_load(const char *path) {
    if (loaded_api) return LF_OK;
    if (path == NULL || path[0] == '\0') return set_unavailable("lorafast was built without CUDA");
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) return set_unavailable(dlerror());
    const lf_cuda_api *(*get_api)(void) = (const lf_cuda_api *(*)(void))dlsym(handle, "lf_cuda_get_api");
    if (get_api == NULL) return set_unavailable("lf_cuda_get_api missing from the kernels library");
    const lf_cuda_api *api = get_api();
    if (api == NULL || api->version != LF_CUDA_API_VERSION || api->api_size != sizeof(lf_cuda_api))
        return set_unavailable("kernels library version does not match _C (rebuild both)");
    int count = 0;
    int code = api->device_count(&count);
    if (code != 0 || count == 0) return set_unavailable(no_device_reason(api, code));
    loaded_api = api;
    unavailable_reason[0] = '\0';
    return LF_OK;
}

const lf_cuda_api *lf_cuda(void) { return loaded_api; }

const char *lf_cuda_unavailable_reason(void) { return unavailable_reason; }
