from degan_bench.cli import main

main()
