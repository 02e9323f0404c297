category "games" {
  files = ["lists/games.txt"]
}
