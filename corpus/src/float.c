/* Floating-point formatting through printf: float, double and long double with %f, %e, %g, %a. */
#include <math.h>
#include <stdio.h>

int main(void) {
    float f = 3.14159265f;
    double d = 2.718281828459045;
    long double ld = 1.41421356237309504880168872420969807L;
    printf("float %f %e %g\n", f, f, f);
    printf("double %.15f %.10e %g %a\n", d, d, d, d);
    printf("long double %.18Lf %.15Le %Lg\n", ld, ld, ld);
    double acc = 0;
    for (int i = 1; i <= 1000; i++)
        acc += 1.0 / ((double)i * i);
    printf("basel %.12f\n", acc);
    long double lacc = 0;
    for (int i = 1; i <= 100; i++)
        lacc += 1.0L / i;
    printf("harmonic %.15Lf\n", lacc);
    printf("special %f %f %g %.3f\n", 1.0 / 0.0, -1.0 / 0.0, 1e300 * 1e10, -0.0);
    printf("int-ish %.0f %.1f %.2f %g\n", 2.5, 0.05, 1e-5, 123456789.0);
    return 0;
}
