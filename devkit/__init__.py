"""What the tests and the benchmarks share, and nothing of the product: the emulators and
fakes they run against, seeded data, the app simulator, the history of every write. Not
installed with reel-reconciler; it imports neither tests nor bench."""
