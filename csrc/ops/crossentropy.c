#include "ops/crossentropy.h"

#include <math.h>
#include <stddef.h>

float crossentropy_forward_backward(float *dlogits, const float *logits, const int32_t *labels,
                                    const float *weights, int B, int V) {
    double total = 0.0, norm = 0.0;
    for (int b = 0; b < B; b++)
        norm += weights ? weights[labels[b]] : 1.0;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * V;
        double mx = z[0], sum = 0.0;
        for (int i = 1; i < V; i++)
            mx = z[i] > mx ? z[i] : mx;
        for (int i = 0; i < V; i++)
            sum += exp(z[i] - mx);
        double lse = mx + log(sum), w = weights ? weights[labels[b]] : 1.0;
        total += w * (lse - z[labels[b]]);
        if (dlogits == NULL) continue;
        for (int i = 0; i < V; i++)
            dlogits[(size_t)b * V + i] = (float)(w / norm * (exp(z[i] - lse) - (i == labels[b])));
    }
    return (float)(total / norm);
}
