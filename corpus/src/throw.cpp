// Throws and catches C++ exceptions through the paths libgcc's unwinder takes: a throw caught in the same frame,
// one caught several frames up with destructors running on the way, a rethrow, catch by base class, a non-class
// exception type, std::exception_ptr carried out of a catch block, and an exception thrown from a destructor's
// scope during unwinding handled inside it. Each step prints a line; the exit status is the number of catches.
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>

static int catches = 0;

struct Noisy {
    const char *name;
    explicit Noisy(const char *n) : name(n) { std::printf("construct %s\n", name); }
    ~Noisy() { std::printf("destroy %s\n", name); }
};

struct Custom : std::runtime_error {
    int code;
    Custom(const std::string &what, int c) : std::runtime_error(what), code(c) {}
};

__attribute__((noinline)) static void depth(int n) {
    Noisy guard(n % 2 ? "odd frame" : "even frame");
    if (n == 0)
        throw Custom("from the bottom", 42);
    depth(n - 1);
}

__attribute__((noinline)) static void rethrow() {
    try {
        throw std::out_of_range("index 7");
    } catch (const std::exception &e) {
        std::printf("inner catch: %s\n", e.what());
        catches++;
        throw;
    }
}

struct Cleanup {
    ~Cleanup() {
        try {
            throw 3.5;
        } catch (double d) {
            std::printf("caught %.1f inside a destructor during unwinding\n", d);
            catches++;
        }
    }
};

int main() {
    try {
        throw 17;
    } catch (int v) {
        std::printf("caught int %d\n", v);
        catches++;
    }
    try {
        depth(4);
    } catch (const Custom &e) {
        std::printf("caught Custom(%s, %d)\n", e.what(), e.code);
        catches++;
    }
    try {
        rethrow();
    } catch (const std::logic_error &e) {
        std::printf("outer catch by base class: %s\n", e.what());
        catches++;
    }
    std::exception_ptr saved;
    try {
        throw std::runtime_error("carried");
    } catch (...) {
        saved = std::current_exception();
    }
    try {
        std::rethrow_exception(saved);
    } catch (const std::runtime_error &e) {
        std::printf("rethrown from exception_ptr: %s\n", e.what());
        catches++;
    }
    try {
        Cleanup c;
        throw std::string("with a cleanup");
    } catch (const std::string &s) {
        std::printf("caught string: %s\n", s.c_str());
        catches++;
    }
    for (int i = 0; i < 100; i++) {
        try {
            if (i % 3 == 0)
                throw i;
        } catch (int v) {
            catches += v == i;
        }
    }
    std::printf("%d catches\n", catches);
    return catches & 0x7f;
}
