# bench/startup's bar chart: seconds to ready per image, three ways.
# gnuplot -e "datafile='..'; outfile='..'; ratelabel='..'" startup.gp
set terminal pngcairo size 1000,520 font "sans,11"
set output outfile
set title "Container start-up, cold cache (".ratelabel.")"
set ylabel "seconds until ready"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top left
set yrange [0:*]
set offsets 0, 0, graph 0.08, 0
plot datafile using 2:xtic(1) title "(a) skopeo copy + umoci unpack + runc", \
     '' using 3 title "(b) anole run", \
     '' using 4 title "(c) anole run, recorded prefetch", \
     '' using 5 title "(d) ctr-pull + ctr run, anole snapshotter"
