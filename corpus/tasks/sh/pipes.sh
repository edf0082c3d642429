# busybox sh: pipelines, command substitution, subshells, loops calling applets, here-documents, exit statuses.
# Run as: busybox sh pipes.sh (natively and under tandem; the output must match).
echo "pipeline: $(seq 1 100 | grep 7 | wc -l) numbers with a 7"
total=0
for i in $(seq 1 10); do
    total=$((total + $(expr $i \* $i)))
done
echo "sum of squares: $total"
(cd / && echo "subshell in $(pwd)")
count=$(printf 'b\na\nc\na\n' | sort | uniq -c | awk '{print $1 $2}' | tr '\n' ' ')
echo "sort | uniq -c: $count"
cat <<END | tr a-z A-Z
here document through tr
END
false | true
echo "status of false | true: $?"
sh -c 'exit 7'
echo "status of sh -c 'exit 7': $?"
x=$(echo outer $(echo inner))
echo "nested substitution: $x"
i=0
while [ $i -lt 3 ]; do i=$((i + 1)); echo "loop $i" | sed 's/loop/iteration/'; done
echo done
