# Keeps the documentation and the examples that CTest builds and runs from
# drifting apart. Fails when
#  - a docs/examples/X.cpp does not appear verbatim in any docs/*.md page
#    (readme_*.cpp: in the project README instead; while that README
#    does not exist, only these files are skipped, with a message); the
#    same for the examples' shared header docs/examples/*.hpp, shown in
#    docs/README.md;
#  - a ```cpp block of a docs/*.md page that defines main() is not exactly
#    one of the examples (a program in the docs that nobody compiles).
#
#   cmake -DDOCS_DIR=<repo>/docs -DREADME=<repo>/README.md -P docs/check_snippets.cmake
#
# Registered as the ctest test docs_snippets_in_sync by docs/CMakeLists.txt.
# Files are read when the check runs, so editing a page needs no reconfigure.
cmake_minimum_required(VERSION 3.16)

if(NOT DEFINED DOCS_DIR OR NOT IS_DIRECTORY "${DOCS_DIR}")
  message(FATAL_ERROR "check_snippets: pass -DDOCS_DIR=<path to docs/> (got '${DOCS_DIR}')")
endif()

file(GLOB pages "${DOCS_DIR}/*.md")
file(GLOB examples "${DOCS_DIR}/examples/*.cpp" "${DOCS_DIR}/examples/*.hpp")
list(SORT pages)
list(SORT examples)
if(NOT examples)
  message(FATAL_ERROR "check_snippets: no examples in ${DOCS_DIR}/examples")
endif()

# File contents may hold semicolons, so they live in one variable each,
# never in a list.
set(page_count 0)
foreach(page IN LISTS pages)
  file(READ "${page}" page_text_${page_count})
  set(page_path_${page_count} "${page}")
  math(EXPR page_count "${page_count} + 1")
endforeach()

set(failures 0)
set(example_count 0)
foreach(example IN LISTS examples)
  get_filename_component(name "${example}" NAME)
  file(READ "${example}" text)
  set(example_text_${example_count} "${text}")
  math(EXPR example_count "${example_count} + 1")
  if(text STREQUAL "")
    message(SEND_ERROR "check_snippets: ${name} is empty")
    math(EXPR failures "${failures} + 1")
    continue()
  endif()

  if(name MATCHES "^readme_")
    if(NOT DEFINED README OR NOT EXISTS "${README}")
      message(STATUS "check_snippets: skipping ${name}: README '${README}' does not exist yet")
      continue()
    endif()
    file(READ "${README}" readme_text)
    string(FIND "${readme_text}" "${text}" at)
    if(at EQUAL -1)
      message(SEND_ERROR "check_snippets: docs/examples/${name} does not appear verbatim in ${README}")
      math(EXPR failures "${failures} + 1")
    else()
      message(STATUS "check_snippets: ${name} is in ${README}")
    endif()
    continue()
  endif()

  set(found "")
  set(i 0)
  while(i LESS page_count)
    string(FIND "${page_text_${i}}" "${text}" at)
    if(NOT at EQUAL -1)
      get_filename_component(found "${page_path_${i}}" NAME)
      break()
    endif()
    math(EXPR i "${i} + 1")
  endwhile()
  if(found STREQUAL "")
    message(SEND_ERROR "check_snippets: docs/examples/${name} does not appear verbatim in any docs/*.md page")
    math(EXPR failures "${failures} + 1")
  else()
    message(STATUS "check_snippets: ${name} is in ${found}")
  endif()
endforeach()

# The other direction: every complete program shown in a page is an example.
set(fence_open "```cpp\n")
string(LENGTH "${fence_open}" fence_open_length)
set(i 0)
while(i LESS page_count)
  get_filename_component(page_name "${page_path_${i}}" NAME)
  set(rest "${page_text_${i}}")
  while(TRUE)
    string(FIND "${rest}" "${fence_open}" start)
    if(start EQUAL -1)
      break()
    endif()
    math(EXPR start "${start} + ${fence_open_length}")
    string(SUBSTRING "${rest}" ${start} -1 rest)
    string(FIND "${rest}" "\n```" end)
    if(end EQUAL -1)
      message(SEND_ERROR "check_snippets: ${page_name} has an unclosed ```cpp block")
      math(EXPR failures "${failures} + 1")
      break()
    endif()
    math(EXPR block_length "${end} + 1")
    string(SUBSTRING "${rest}" 0 ${block_length} block)
    string(SUBSTRING "${rest}" ${block_length} -1 rest)
    if(NOT block MATCHES "int main\\(")
      continue()  # an API skeleton or a fragment, not a program
    endif()
    set(matched FALSE)
    set(j 0)
    while(j LESS example_count)
      if("${block}" STREQUAL "${example_text_${j}}")
        set(matched TRUE)
        break()
      endif()
      math(EXPR j "${j} + 1")
    endwhile()
    if(NOT matched)
      string(SUBSTRING "${block}" 0 60 head)
      message(SEND_ERROR "check_snippets: ${page_name} shows a program that is not one of "
                         "docs/examples/*.cpp (it starts: ${head}...)")
      math(EXPR failures "${failures} + 1")
    endif()
  endwhile()
  math(EXPR i "${i} + 1")
endwhile()

if(failures GREATER 0)
  message(FATAL_ERROR "check_snippets: ${failures} problem(s); the docs and docs/examples/ have drifted apart")
endif()
message(STATUS "check_snippets: docs and examples are in sync")
