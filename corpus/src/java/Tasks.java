// A Java program for tandem's end-to-end test of the JVM (tests/dynamic.rs): the JIT (a hot loop, Math's
// intrinsics), the garbage collector (many short-lived objects), threads that hand work to each other, and
// BigInteger. Its output is the same on every run, natively and under tandem. Built by corpus/build.sh
// (javac --release 11) into corpus/java/Tasks.class.
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

public class Tasks {
    public static void main(String[] args) throws Exception {
        List<Integer> list = new ArrayList<>();
        for (int i = 0; i < 200_000; i++) {
            list.add((i * 7919) % 10007);
        }
        Collections.sort(list);
        long sum = 0;
        for (int x : list) {
            sum += x;
        }
        System.out.println("sorted sum " + sum + ", median " + list.get(list.size() / 2));
        double acc = 0;
        for (int i = 1; i < 2_000_000; i++) {
            acc += Math.log(i) * Math.sin(i) / Math.sqrt(i);
        }
        System.out.println(String.format("log-sin-sqrt %.6f", acc));
        ExecutorService pool = Executors.newFixedThreadPool(4);
        List<Future<BigInteger>> parts = new ArrayList<>();
        for (int t = 0; t < 8; t++) {
            final int from = t * 50 + 1;
            parts.add(pool.submit(() -> {
                BigInteger p = BigInteger.ONE;
                for (int k = from; k < from + 50; k++) {
                    p = p.multiply(BigInteger.valueOf(k));
                }
                return p;
            }));
        }
        BigInteger factorial = BigInteger.ONE;
        for (Future<BigInteger> f : parts) {
            factorial = factorial.multiply(f.get());
        }
        pool.shutdown();
        System.out.println("400! has " + factorial.toString().length() + " digits, ends "
                + factorial.toString().substring(0, 20));
        StringBuilder garbage = new StringBuilder();
        for (int i = 0; i < 100_000; i++) {
            garbage.setLength(0);
            garbage.append("item-").append(i).append(new int[16].length);
        }
        System.out.println("last " + garbage);
    }
}
