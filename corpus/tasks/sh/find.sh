# busybox find -exec, xargs and timeout, over a directory the script makes in /tmp.
d=/tmp/tandem-find-$$
mkdir -p $d/a/b $d/c
for f in one two three; do echo "$f" > $d/a/$f.txt; done
echo four > $d/a/b/four.txt
echo five > $d/c/five.log
echo "find -exec cat: $(find $d -name '*.txt' -exec cat {} \; | sort | tr '\n' ' ')"
echo "find | xargs wc -l: $(find $d -type f | sort | xargs wc -l | tail -1)"
echo "xargs -n 2: $(echo 1 2 3 4 5 | xargs -n 2 echo | tr '\n' '|')"
timeout 5 sh -c 'echo within the timeout'
echo "timeout status: $?"
timeout 1 sh -c 'while :; do :; done'
echo "timeout of a busy loop: $?"
rm -r $d
echo "removed: $([ -e $d ] && echo no || echo yes)"
