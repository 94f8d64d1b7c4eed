import MMCommands

MM.main()
