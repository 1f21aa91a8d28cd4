# bench/smc's chart: each measure as shared memory's gain over TCP
# loopback (higher is better; latency as TCP's over ours), beside its goal.
# gnuplot -e "datafile='..'; outfile='..'" smc.gp
set terminal pngcairo size 1000,480 font "sans,11"
set output outfile
set title "anole smc run against TCP loopback (gain over TCP, higher is better)"
set ylabel "x TCP"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top right
set logscale y 2
set yrange [0.25:*]
set xtics rotate by -25
plot datafile using 2:xtic(1) title "anole smc run", \
     '' using 3 title "goal" fillstyle pattern 4, \
     1 notitle lc rgb "black" dt 2
